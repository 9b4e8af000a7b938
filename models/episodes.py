"""Episodes (one task's support and query sets) and the problem a model solves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import InitVar, dataclass, field
from typing import Any, Literal, Protocol

import torch
from torch import Tensor

from models.images import ImageFormat
from models.modality import Modality, legacy_modality, modality_from_json

__all__ = ["SPLITS", "Episode", "ImageFormat", "OutputKind", "ProblemSpec", "Split", "SplitNames", "SupervisedBatch",
           "TaskFamily"]

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
MAX_LISTED_NAMES = 2000  # names kept per split in a model's record (all of Omniglot's 1623 characters)
OutputKind = Literal["classification", "regression"]


@dataclass(frozen=True)
class Episode:
    """One task: a labelled support set to adapt on and a query set to score on.

    Classification labels are class indices 0..n-1 (int64); regression targets are float
    tensors of shape [n, output_dim].
    """

    support_x: Tensor  # [n_support, *input_shape]
    support_y: Tensor  # [n_support] or [n_support, output_dim]
    query_x: Tensor  # [n_query, *input_shape]
    query_y: Tensor  # [n_query] or [n_query, output_dim]


@dataclass(frozen=True)
class ProblemSpec:
    """What a model takes and gives: the contract between a dataset, a learner and the API.

    `modality` names what an input is (models.modality: image, vector) and owns how inputs are
    decoded, normalised and embedded; `input_shape` is its shape. Built without a modality (as
    specs stored before modalities were named, and positional constructions), the modality is
    derived from input_shape and `image` (models.modality.legacy_modality)."""

    input_shape: tuple[int, ...]
    output: OutputKind
    n_way: int = 0  # classes per task (classification)
    output_dim: int = 1  # target size (regression)
    image: InitVar[ImageFormat | None] = None  # legacy: an image format; use modality
    modality: Modality = field(default=None)  # type: ignore[assignment]  # filled in __post_init__
    # The most classes a task may have (classification), set by the learner when a model is
    # stored (Learner.max_classes); 0: n_way, the way it trained at.
    max_classes: int = 0

    def __post_init__(self, image: ImageFormat | None) -> None:
        if self.modality is None:
            object.__setattr__(self, "modality", legacy_modality(self.input_shape, image))
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        if tuple(self.modality.input_shape) != self.input_shape:
            raise ValueError(f"input_shape {list(self.input_shape)} is not the {self.modality.name} modality's "
                             f"{list(self.modality.input_shape)}")

    @classmethod
    def of(cls, modality: Modality, output: OutputKind, n_way: int = 0, output_dim: int = 1) -> ProblemSpec:
        return cls(modality.input_shape, output, n_way=n_way, output_dim=output_dim, modality=modality)

    def to_json(self) -> dict[str, Any]:
        return {"input_shape": list(self.input_shape), "output": self.output, "n_way": self.n_way,
                "output_dim": self.output_dim, "modality": self.modality.to_json(), "max_classes": self.max_classes}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProblemSpec:
        """A stored spec; one without `modality` (stored before modalities were named) gets the one
        its input_shape and `image` imply."""
        image = data.get("image")
        stored = data.get("modality")
        return cls(
            input_shape=tuple(data["input_shape"]),
            output=data["output"],
            n_way=int(data.get("n_way", 0)),
            output_dim=int(data.get("output_dim", 1)),
            image=ImageFormat(**image) if image else None,
            modality=modality_from_json(stored) if stored else None,  # type: ignore[arg-type]
            max_classes=int(data.get("max_classes", 0)),
        )

    @property
    def class_limit(self) -> int:
        """The most classes a task may have: max_classes, or n_way when unset."""
        return self.max_classes or self.n_way


@dataclass(frozen=True)
class SupervisedBatch:
    """Examples of the train split with global labels: class ids over all its classes (0..n_classes-1)
    for classification, targets for regression (n_classes 0). Pretraining data of the fine-tuning
    baseline; families that offer it have `supervised_batch(size, generator)`."""

    x: Tensor  # [B, *input_shape]
    y: Tensor  # [B] int64 or [B, output_dim]
    n_classes: int


@dataclass(frozen=True)
class SplitNames:
    """What each split holds, by name: the classes (or the dataset's tasks) of meta-train,
    meta-val and meta-test, so that a user can adapt on classes a model never saw."""

    kind: Literal["classes", "tasks"]
    names: dict[Split, list[str]]

    @classmethod
    def of(cls, kind: Literal["classes", "tasks"], splits: dict[Split, list[int]], names: Sequence[str]) -> SplitNames:
        """Names of the groups in each split; a group without a name is called by its index."""
        return cls(kind, {s: [names[i] if i < len(names) else str(i) for i in splits.get(s, [])] for s in SPLITS})

    def to_json(self, limit: int = MAX_LISTED_NAMES) -> dict[str, Any]:
        """{"kind", and per split {"count", "names"}}: the first `limit` names, in the dataset's order."""
        return {"kind": self.kind, **{s: {"count": len(self.names[s]), "names": self.names[s][:limit]} for s in SPLITS}}


class TaskFamily(Protocol):
    """A distribution over tasks, split so that meta-test tasks never appear in training."""

    @property
    def spec(self) -> ProblemSpec: ...

    def sample(self, split: Split, n_tasks: int, generator: torch.Generator) -> list[Episode]: ...

    def split_names(self) -> SplitNames | None:
        """The classes (or dataset tasks) of meta-train, meta-val and meta-test, by name; None for a
        family that draws new tasks for every split (sinusoid, mtl-synthetic) rather than split classes."""
        ...
