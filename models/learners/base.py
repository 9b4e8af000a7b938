"""The learner contract every algorithm implements, so callers never branch on it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from models.config import Config, Float
from models.episodes import Episode, ProblemSpec, SupervisedBatch, TaskFamily

Params = dict[str, Tensor]
# What one outer update trains on: a meta-batch of episodes, or (the fine-tuning baseline's
# pretraining) a supervised batch with global labels. training_batch() returns it; a
# learner's meta_train_step() takes what its own training_batch() returns.
TrainingBatch = list[Episode] | SupervisedBatch
# The most gradient steps one adaptation may take, for every learner (configs' inner_steps and
# adapt_steps, and AdaptOptions.inner_steps, which the API's task options bound the same way).
MAX_ADAPT_STEPS = 100
# The other limits learners' configs share, one constant each (the API's task options use
# MAX_INNER_LR too).
MAX_WIDTH = 4096  # a layer's width
MAX_LAYERS = 32  # hidden layers of an MLP
MAX_CHANNELS = 512  # Conv4's width
MAX_META_LR = 1
MAX_INNER_LR = 10

# Config field types with those limits, for one-line declarations in each learner's config.
Width = Annotated[int, Field(ge=1, le=MAX_WIDTH)]
Widths = Annotated[list[Width], Field(min_length=1, max_length=MAX_LAYERS)]  # an MLP's hidden layers
Channels = Annotated[int, Field(ge=1, le=MAX_CHANNELS)]
MetaRate = Annotated[Float, Field(gt=0, le=MAX_META_LR)]
InnerRate = Annotated[Float, Field(gt=0, le=MAX_INNER_LR)]
AdaptSteps = Annotated[int, Field(ge=0, le=MAX_ADAPT_STEPS)]

# The most classes one task may have with a learner that builds a task's classes from its
# support set (ProtoNet, the fine-tuning baseline, attention), whatever way it trained at.
MAX_CLASSES = 1000


class AdaptationDiverged(ValueError):
    """An adapted state that cannot predict: non-finite values, or non-finite outputs."""


def check_support_outputs(outputs: Tensor, support_y: Tensor) -> None:
    """Refuse an adapted state whose outputs for its own support inputs are not finite: finite
    parameters of 1e36 (labels of 1e38 and a plain inner step) give infinite outputs, which
    would answer every prediction with null."""
    if torch.isfinite(outputs).all():
        return
    hint = "try a smaller inner_lr"
    if support_y.is_floating_point():
        hint = f"scale the labels down (the largest |label| is {support_y.abs().max().item():.3g}) or {hint}"
    raise AdaptationDiverged(
        "adaptation diverged: the adapted task's predictions for its own support inputs are not finite "
        f"(beyond float32's range, about 3.4e38); {hint}"
    )


@dataclass(frozen=True)
class AdaptOptions:
    """Per-adaptation overrides; a learner without an inner loop ignores them."""

    inner_steps: int | None = None
    inner_lr: float | None = None
    # Metric learners (ProtoNet, fine-tuning with scope "head"; models/learners/features.py):
    # embeddings averaged over this many fixed affine views of each image (0 or None: off), and
    # SimpleShot's centring on the support mean and L2 normalisation of features.
    test_time_augmentation: int | None = None
    feature_normalization: bool | None = None


@dataclass(frozen=True)
class AdaptRequest:
    """One task's support set and options, as adapt_many takes them."""

    support_x: Tensor
    support_y: Tensor
    options: AdaptOptions | None = None


class Learner(ABC):
    """theta lives in the learner; phi (a task's adapted state) is a dict of plain tensors.

    Everything callers (workers, checkpoints, evaluation) use is declared here; they never
    probe a learner with hasattr/getattr.
    """

    algorithm: ClassVar[str]
    # The learner's settings: a models.config.Config (pydantic) whose fields carry their limits.
    config_class: ClassVar[type[Config]]
    # Needs a dataset of named training tasks (a MultiTaskFamily), and serves each of them as
    # a ready task (training_task_states). The multi-task learner.
    trains_on_fixed_tasks: ClassVar[bool] = False
    # adapt() takes gradient steps from theta, so AdaptOptions(inner_steps=0) is theta
    # unadapted: evaluation then also reports the unadapted score (regression: mse_unadapted).
    # The MAML family and the fine-tuning baseline.
    zero_steps_is_unadapted: ClassVar[bool] = False
    # adapt() computes the adapted state's outputs for the support inputs anyway and refuses non-finite
    # ones itself (check_support_outputs), so the adapt worker does not predict them again. The MAML family.
    checks_support_outputs: ClassVar[bool] = False
    # The outer loop's optimizer over theta; every learner's __init__ sets it. Checkpoints
    # save and restore its state.
    optimizer: torch.optim.Optimizer

    def __init__(self, spec: ProblemSpec, config: Any) -> None:  # config: an instance of config_class
        self.spec = spec
        self.config = config

    @abstractmethod
    def meta_train_step(self, episodes: list[Episode]) -> dict[str, float]:
        """One outer update of theta on a meta-batch; returns mean query loss (and accuracy)."""

    @abstractmethod
    def adapt(self, support_x: Tensor, support_y: Tensor, options: AdaptOptions | None = None) -> Params:
        """phi for one task from its support set. Classification labels are 0..n-1, n <= n_way."""

    def adapt_many(self, requests: list[AdaptRequest]) -> list[Params]:
        """adapt for several tasks at once (the adapt worker's batch of queued tasks of one model):
        the same states as one adapt per request, within float tolerance. Raises what adapt
        raises for any request (the caller then adapts them one by one, to fail only that one).
        Learners with a batched form override it (one embedding pass, vmap over tasks); this
        default makes one call per request."""
        return [self.adapt(r.support_x, r.support_y, r.options) for r in requests]

    @abstractmethod
    def predict(self, phi: Params, x: Tensor) -> Tensor:
        """Logits [B, n] (classification, n = the task's classes) or outputs [B, output_dim]."""

    def serving_state(self, phi: Params) -> Params:
        """A stored task state in the form predict takes fastest on this learner's device (the API
        keeps it so in its state cache): the same values; phi itself unless a learner overrides it."""
        return phi

    def predict_many(self, requests: list[tuple[Params, Tensor]]) -> list[Tensor]:
        """predict for several tasks' inputs at once (the API's dynamic batching): the same outputs
        as one predict per (phi, x), within float tolerance. Learners with a batched form (one
        embedding pass, vmap over stacked task states, stacked summaries) override it; this
        default makes one call per request."""
        return [self.predict(phi, x) for phi, x in requests]

    @abstractmethod
    def state(self) -> Params:
        """theta as plain detached tensors (safetensors-ready)."""

    @abstractmethod
    def load_state(self, tensors: Params) -> None:
        """Restore theta written by state()."""

    # Shared by every learner.

    @property
    def device(self) -> torch.device:
        """Where theta lives (the device of the learner's first parameter)."""
        for value in vars(self).values():
            if isinstance(value, torch.nn.Module):
                for p in value.parameters():
                    return p.device
        return torch.device("cpu")

    def to(self, device: torch.device) -> Learner:
        """Move theta (every module the learner holds) to `device`; the optimizer follows."""
        for value in vars(self).values():
            if isinstance(value, torch.nn.Module):
                value.to(device)
        return self

    def training_batch(self, tasks: TaskFamily, size: int, generator: torch.Generator) -> TrainingBatch:
        """What one outer update trains on: `size` episodes of the train split, unless the
        learner trains on something else (the fine-tuning baseline: a supervised batch)."""
        return tasks.sample("train", size, generator)

    def training_task_states(self) -> dict[str, Params]:
        """phi of every named training task, ready for predict(); empty unless the learner
        trains on fixed tasks (trains_on_fixed_tasks)."""
        return {}

    @classmethod
    def stored_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """A stored model's config as this code reads it: keys added since it was stored whose
        default would change the network get the value that matches its weights."""
        return config

    @classmethod
    def config_for(cls, config: Config, tasks: TaskFamily) -> Config:
        """The config this learner trains with on `tasks`: `config` itself unless the learner
        takes something from the dataset (the multi-task learner: its training tasks' names).
        Raises ValueError when the config contradicts the dataset."""
        return config

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        if self.spec.output == "classification":
            return F.cross_entropy(outputs, targets)
        return F.mse_loss(outputs, targets)

    def score(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        """Query metrics of one task: accuracy for classification, MSE for regression."""
        if self.spec.output == "classification":
            acc = (outputs.argmax(dim=-1) == targets).float().mean()
            return {"accuracy": float(acc)}
        return {"mse": float(F.mse_loss(outputs, targets))}

    @property
    def max_classes(self) -> int:
        """The most classes a task may have: the way the learner was meta-trained at, where its
        output slots are fixed by it (the MAML family, black-box learners); learners that build
        a task's classes from its support set override it with MAX_CLASSES."""
        return self.spec.n_way

    def check_support(self, support_x: Tensor, support_y: Tensor) -> None:
        if support_x.shape[1:] != torch.Size(self.spec.input_shape):
            raise ValueError(
                f"support inputs have shape {tuple(support_x.shape[1:])}, "
                f"the model takes {self.spec.input_shape}"
            )
        if self.spec.output == "classification":
            n = int(support_y.max()) + 1 if support_y.numel() else 0
            if n > self.max_classes:
                raise ValueError(f"the support set has {n} classes, the model supports at most {self.max_classes}")


def same_shape_groups(requests: list[tuple[Params, Tensor]]) -> list[list[int]]:
    """Indices of requests whose inputs and task states have the same keys and shapes: each group
    can be stacked along a new task dimension (vmap, stacked summaries)."""
    groups: dict[tuple[object, ...], list[int]] = {}
    for i, (phi, x) in enumerate(requests):
        key = (tuple(x.shape), x.dtype, tuple((k, tuple(v.shape), v.dtype) for k, v in phi.items()))
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def stack_states(states: list[Params]) -> Params:
    return {k: torch.stack([s[k] for s in states]) for k in states[0]}
