"""The built-in datasets, each described once: the API lists these, the recipe validates and
fills defaults from them. Uploaded datasets (ds_...) are described by their own rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from models.episodes import OutputKind
from models.mnist import DEFAULT_FRACTIONS
from models.modality import ImageModality, Modality, VectorModality


@dataclass(frozen=True)
class BuiltinDataset:
    name: str
    output: OutputKind
    modality: Modality | None  # None: set by the job's config (mtl-synthetic's input_dim)
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)  # TrainingConfig and learner defaults
    split_fractions: tuple[float, float] | None = None  # (val, test) of split classes; None: new tasks per split
    named_tasks: bool = False  # has named training tasks (the multitask learner trains on them)

    def public(self) -> dict[str, Any]:
        """`modality` and `modality_params` of the public dataset object (params null when the config sets them)."""
        if self.modality is None:
            return {"modality": VectorModality.name, "modality_params": None}
        return self.modality.public()


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {d.name: d for d in (
    BuiltinDataset("sinusoid", "regression", VectorModality((1,)),
                   "y = A sin(x - phase), A ~ U[0.1, 5], phase ~ U[0, pi], x ~ U[-5, 5] (MAML paper)",
                   {"k_shot": 10, "k_query": 10, "meta_batch_size": 25, "inner_lr": 0.01}),
    BuiltinDataset("omniglot", "classification", ImageModality(1, 28, invert=True),
                   "1623 handwritten characters of 50 alphabets, 20 drawings each; disjoint class splits",
                   {"n_way": 5, "k_shot": 1, "k_query": 15, "meta_batch_size": 32, "inner_lr": 0.4}, (0.1, 0.25)),
    BuiltinDataset("mnist", "classification", ImageModality(1, 28, invert=False),
                   "handwritten digits; digits 0-4 meta-train, 5-9 meta-test",
                   {"n_way": 5, "k_shot": 1, "k_query": 15, "meta_batch_size": 32, "inner_lr": 0.4}, DEFAULT_FRACTIONS,
                   named_tasks=True),
    BuiltinDataset("mtl-synthetic", "regression", None, "the MMoE paper's synthetic tasks of tunable correlation",
                   {"k_shot": 10, "k_query": 118, "eval_episodes": 100, "inner_lr": 0.01},  # meta_batch_size: num_tasks
                   named_tasks=True),
)}
