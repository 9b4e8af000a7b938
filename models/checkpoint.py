"""A meta-training run's full state as plain tensors plus JSON, so a run resumes exactly.

Holds theta (the learner's state), the optimizer's state, the task sampler's generator and
torch's global RNG: a run stopped after step s and resumed from its checkpoint draws the same
batches and makes the same updates as one that never stopped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from models.learners.base import Learner, Params

THETA = "theta."
OPTIM = "optim."
SAMPLER_RNG = "rng.sampler"
TORCH_RNG = "rng.torch"


@dataclass(frozen=True)
class TrainingCheckpoint:
    step: int
    tensors: Params  # safetensors-ready
    metadata: dict[str, str]  # safetensors metadata: strings only


def capture(
    learner: Learner, generator: torch.Generator, step: int, extra: tuple[Params, dict[str, str]] | None = None
) -> TrainingCheckpoint:
    """`extra`: more tensors and metadata to carry (models.training.Validation's best state),
    under keys apart from this module's."""
    tensors: Params = {THETA + k: v for k, v in learner.state().items()}
    optim_tensors, optim_meta = _optimizer_state(learner.optimizer)
    tensors.update({OPTIM + k: v for k, v in optim_tensors.items()})
    tensors[SAMPLER_RNG] = generator.get_state()
    tensors[TORCH_RNG] = torch.get_rng_state()
    metadata = {"step": str(step), "optimizer": json.dumps(optim_meta), "algorithm": learner.algorithm}
    if extra is not None:
        tensors.update(extra[0])
        metadata.update(extra[1])
    return TrainingCheckpoint(step, tensors, metadata)


def restore(learner: Learner, tensors: Params, metadata: dict[str, str]) -> tuple[int, torch.Generator]:
    """Load a checkpoint into a freshly built learner; returns (step, the sampler's generator)."""
    if metadata.get("algorithm") != learner.algorithm:
        raise ValueError(f"checkpoint of {metadata.get('algorithm')!r} cannot resume a {learner.algorithm!r} run")
    learner.load_state({k[len(THETA):]: v for k, v in tensors.items() if k.startswith(THETA)})
    optim = {k[len(OPTIM):]: v for k, v in tensors.items() if k.startswith(OPTIM)}
    _load_optimizer_state(learner.optimizer, optim, json.loads(metadata["optimizer"]))
    generator = torch.Generator()
    generator.set_state(tensors[SAMPLER_RNG])
    torch.set_rng_state(tensors[TORCH_RNG])
    return int(metadata["step"]), generator


def _optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[Params, dict[str, Any]]:
    """Flatten `state_dict()`: tensors by "<param index>.<name>", the rest as JSON."""
    state = optimizer.state_dict()
    tensors: Params = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, Tensor):
                tensors[f"{index}.{name}"] = value.detach().clone().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: Params, meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
