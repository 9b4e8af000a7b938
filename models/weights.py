"""A model's meta-trained weights as one safetensors file that rebuilds its network anywhere.

The file's tensors are the learner's state (theta); its metadata names the algorithm and holds
the problem spec and the learner config as JSON, which is all `load_learner` needs:

    learner = read_weights("model.safetensors")      # a models.learners.Learner, on the CPU
    phi = learner.adapt(support_x, support_y)        # the contract's verbs, plain tensors
    outputs = learner.predict(phi, query_x)
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save

from models.episodes import ProblemSpec
from models.learners import Learner, load_learner

FORMAT = "fewshot.weights.v1"


def weights_bytes(algorithm: str, spec: dict[str, Any], config: dict[str, Any], theta: dict[str, torch.Tensor],
                  **extra: str) -> bytes:
    """The safetensors file of theta, with what rebuilds the learner in its metadata (string pairs)."""
    metadata = {"format": FORMAT, "algorithm": algorithm, "spec": json.dumps(spec), "config": json.dumps(config),
                **extra}
    return save({k: v.detach().contiguous().cpu() for k, v in theta.items()}, metadata=metadata)


def read_weights(path: str | os.PathLike[str]) -> Learner:
    """The learner a weights file describes, with its meta-trained theta loaded."""
    with safe_open(os.fspath(path), framework="pt") as f:
        metadata = f.metadata() or {}
        if metadata.get("format") != FORMAT:
            raise ValueError(f"{path} is not a fewshot weights file (metadata format {metadata.get('format')!r})")
        theta = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 - safe_open has no iterator
    spec = ProblemSpec.from_json(json.loads(metadata["spec"]))
    return load_learner(metadata["algorithm"], spec, json.loads(metadata["config"]), theta)
