"""Multi-task learning: one f_theta(y | x, z_i) for training tasks i = 1..T, trained on
sum_i w_i L_i. `architecture` chooses how the network conditions on the task (see
models/multitask/networks.py); phi of a task is its own part of the network (head, tower,
gate, embedding or whole network), so every training task is served as is, and a new task
fits a new phi on its support set with the shared parameters frozen.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from models.config import PREFIX, Config, ConfigError, Float
from models.episodes import Episode, ProblemSpec, TaskFamily
from models.learners.base import (
    MAX_ADAPT_STEPS,
    MAX_LAYERS,
    AdaptOptions,
    AdaptSteps,
    InnerRate,
    Learner,
    MetaRate,
    Params,
    Width,
    Widths,
)
from models.learners.inner import inner_loop
from models.multitask.families import MultiTaskFamily, TaskEpisode
from models.multitask.networks import (
    Architecture,
    ConcatNet,
    GatingNet,
    MMoENet,
    MultiHeadNet,
    SeparateNets,
    SoftSharingNets,
    TaskConditionedNet,
)
from models.multitask.weighting import LossWeighting, TargetScaler, Weighting, support_stats

TARGET_MEAN, TARGET_STD, NUM_CLASSES = "target.mean", "target.std", "num_classes"  # phi entries beside the network's
ADAPT_SEED = 0  # a new task's phi starts from the same draw every time


class MultiTaskConfig(Config):
    architecture: Architecture = "multi-head"
    hidden: Widths = [64]  # shared layers (per task for separate/soft-sharing)
    tower: Annotated[list[Width], Field(max_length=MAX_LAYERS)] = []  # per-task hidden layers above the shared part (multi-head, mmoe)
    embedding: Literal["learned", "one-hot"] = "learned"  # z_i for concat and gating
    embedding_dim: int = Field(8, ge=1, le=1024)  # learned z_i size (one-hot: the number of tasks)
    concat_layer: int = Field(0, ge=0)  # concat: the layer z_i joins (0 = the input, len(hidden) = the output layer)
    experts: int = Field(8, ge=1, le=256)  # mmoe
    expert_hidden: Widths = [16]  # mmoe: widths of each expert; the last is its output
    sharing_penalty: Float = Field(0.01, ge=0, le=1e6)  # soft-sharing: weight of sum_i ||theta_i - mean theta||^2
    weighting: Weighting = "fixed"
    task_weights: list[Annotated[Float, Field(ge=0, le=1e6)]] = []  # fixed weights w_i, one per task (empty: all 1)
    scale_targets: bool = True  # regression: train on per-task standardised targets
    lr: MetaRate = 1e-3  # Adam
    weight_decay: Float = Field(0.0, ge=0, le=1)
    adapt_steps: AdaptSteps = 30  # Adam steps fitting a new task's phi (more overfit small support sets)
    adapt_lr: InnerRate = 0.01
    task_names: list[Annotated[str, Field(min_length=1)]] = []  # filled from the dataset's training tasks

    @model_validator(mode="after")
    def _check(self) -> MultiTaskConfig:
        if self.concat_layer > len(self.hidden):
            raise ConfigError(f"concat_layer must be between 0 and len(hidden) = {len(self.hidden)}, got {self.concat_layer}",
                              PREFIX + "concat_layer")
        if len(set(self.task_names)) != len(self.task_names):
            raise ConfigError("task_names must be distinct", PREFIX + "task_names")
        return self


def build_network(cfg: MultiTaskConfig, num_tasks: int, in_dim: int, out_dim: int) -> TaskConditionedNet:
    if cfg.architecture == "concat":
        return ConcatNet(num_tasks, in_dim, cfg.hidden, out_dim, cfg.embedding, cfg.embedding_dim, cfg.concat_layer)
    if cfg.architecture == "gating":
        return GatingNet(num_tasks, in_dim, cfg.hidden, out_dim, cfg.embedding, cfg.embedding_dim)
    if cfg.architecture == "multi-head":
        return MultiHeadNet(num_tasks, in_dim, cfg.hidden, out_dim, cfg.tower)
    if cfg.architecture == "separate":
        return SeparateNets(num_tasks, in_dim, cfg.hidden, out_dim)
    if cfg.architecture == "soft-sharing":
        return SoftSharingNets(num_tasks, in_dim, cfg.hidden, out_dim, cfg.sharing_penalty)
    return MMoENet(num_tasks, in_dim, out_dim, cfg.experts, cfg.expert_hidden, cfg.tower)


class TaskClasses(nn.Module):
    """Classes seen in each training task's labels, so that a task with fewer than n_way
    classes answers over its own classes only."""

    def __init__(self, num_tasks: int) -> None:
        super().__init__()
        self.register_buffer("count", torch.zeros(num_tasks, dtype=torch.int64))  # [T]

    @torch.no_grad()
    def update(self, task: int, y: Tensor) -> None:
        self.count[task] = torch.maximum(self.count[task], y.max() + 1)


class MultiTaskLearner(Learner):
    algorithm = "multitask"
    config_class = MultiTaskConfig
    trains_on_fixed_tasks = True  # needs a dataset of named training tasks

    def __init__(self, spec: ProblemSpec, config: MultiTaskConfig) -> None:
        super().__init__(spec, config)
        if not config.task_names:
            raise ValueError("the multitask learner needs the dataset's training tasks (task_names); "
                             "train it on a multi-task dataset such as mtl-synthetic or mnist")
        self.num_tasks = len(config.task_names)
        if config.task_weights and len(config.task_weights) != self.num_tasks:
            raise ValueError(f"task_weights has {len(config.task_weights)} weights for {self.num_tasks} tasks")
        self.regression = spec.output == "regression"
        out_dim = spec.output_dim if self.regression else spec.n_way
        in_dim = spec.modality.features
        self.net = build_network(config, self.num_tasks, in_dim, out_dim)
        self.weighting = LossWeighting(self.num_tasks, config.weighting, config.task_weights, self.regression)
        self.scaler = TargetScaler(self.num_tasks, out_dim)
        self.classes = TaskClasses(self.num_tasks)
        self.parts = nn.ModuleDict({"net": self.net, "weighting": self.weighting, "scaler": self.scaler, "classes": self.classes})
        trainable = [p for p in self.parts.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=config.lr, weight_decay=config.weight_decay)

    @classmethod
    def config_for(cls, config: Config, tasks: TaskFamily) -> Config:
        """The config with `task_names` filled from the dataset's training tasks; a ValueError
        when the config names tasks the dataset does not have."""
        assert isinstance(config, MultiTaskConfig)
        if not isinstance(tasks, MultiTaskFamily):
            raise ValueError("the multitask learner trains on a dataset of named training tasks, such as mtl-synthetic")
        names = list(tasks.task_names)
        if config.task_names and list(config.task_names) != names:
            raise ValueError(f"task_names {config.task_names} do not match the dataset's tasks {names}; leave it out")
        return MultiTaskConfig(**{**config.to_json(), "task_names": names})

    def to(self, device: torch.device | str) -> MultiTaskLearner:
        """Move theta (and the optimizer's parameters with it) to a device; inputs follow."""
        self.parts.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return self.scaler.mean.device

    @property
    def scaling(self) -> bool:
        return self.regression and self.config.scale_targets

    # Training: one update of sum_i w_i L_i over per-task minibatches.

    def meta_train_step(self, episodes: list[Episode]) -> dict[str, float]:
        batches = self._group_by_task(episodes)
        self.parts.train()
        self.optimizer.zero_grad(set_to_none=True)
        losses: dict[int, Tensor] = {}
        metrics: dict[str, float] = {}
        for task, (x, y) in batches.items():
            if self.scaling:
                self.scaler.update(task, y)
            if not self.regression:
                self.classes.update(task, y)
            out = self.net.forward_task(self.net.task_params(task), x)  # [n, O], standardised units when scaling
            losses[task] = self.loss(out, self._scaled(task, y))
            metrics.update(self._task_metrics(task, out.detach(), y, losses[task]))
        total = self.weighting.combine(losses) + self.net.penalty()
        total.backward()
        self.optimizer.step()
        metric = "mse" if self.regression else "accuracy"
        names = self.config.task_names
        metrics["loss"] = float(total.detach())
        metrics[metric] = sum(metrics[f"{metric}/{names[t]}"] for t in batches) / len(batches)
        return metrics

    def _group_by_task(self, episodes: list[Episode]) -> dict[int, tuple[Tensor, Tensor]]:
        xs: dict[int, list[Tensor]] = {}
        ys: dict[int, list[Tensor]] = {}
        for ep in episodes:
            task = ep.task if isinstance(ep, TaskEpisode) else None
            if task is None or not 0 <= task < self.num_tasks:
                raise ValueError("the multitask learner trains on minibatches of its training tasks (TaskEpisode); "
                                 "use a multi-task dataset")
            xs.setdefault(task, []).extend([ep.support_x, ep.query_x])
            ys.setdefault(task, []).extend([ep.support_y, ep.query_y])
        dev = self.device
        as_vector = self.spec.modality.as_vector  # [B, *input_shape] -> [B, features], standardised for vectors
        return {t: (as_vector(torch.cat(xs[t])).to(dev), torch.cat(ys[t]).to(dev)) for t in sorted(xs)}

    def _scaled(self, task: int, y: Tensor) -> Tensor:
        if not self.scaling:
            return y
        mean, std = self.scaler.stats(task)
        return (y - mean) / std

    def _task_metrics(self, task: int, out: Tensor, y: Tensor, loss: Tensor) -> dict[str, float]:
        name = self.config.task_names[task]
        metrics = {f"loss/{name}": float(loss.detach()), f"weight/{name}": self.weighting.effective_weight(task)}
        if self.regression:
            if self.scaling:
                mean, std = self.scaler.stats(task)
                out = out * std + mean
            metrics[f"mse/{name}"] = float(torch.mean((out - y) ** 2))
        else:
            metrics[f"accuracy/{name}"] = float((out.argmax(-1) == y).float().mean())
        return metrics

    # Serving: phi of each training task, and a new task's phi fitted on its support set.

    def training_task_states(self) -> dict[str, Params]:
        """phi of every training task by name, ready for predict()."""
        states = {}
        for task, name in enumerate(self.config.task_names):
            phi = {k: v.detach().clone().contiguous() for k, v in self.net.task_params(task).items()}
            states[name] = {**phi, **self._output_entries(task)}
        return states

    def _output_entries(self, task: int | None, support_y: Tensor | None = None) -> Params:
        if not self.regression:
            n = int(support_y.max()) + 1 if support_y is not None else int(self.classes.count[task]) or self.spec.n_way
            return {NUM_CLASSES: torch.tensor(n)}
        if not self.scaling:
            return {}
        if task is not None:
            mean, std = self.scaler.stats(task)
        else:
            assert support_y is not None
            fallback = torch.stack([self.scaler.stats(t)[1] for t in range(self.num_tasks)]).mean(0)
            mean, std = support_stats(support_y, fallback)
        return {TARGET_MEAN: mean.contiguous(), TARGET_STD: std.contiguous()}

    def adapt(self, support_x: Tensor, support_y: Tensor, options: AdaptOptions | None = None) -> Params:
        self.check_support(support_x, support_y)
        support_x, support_y = support_x.to(self.device), support_y.to(self.device)
        options = options or AdaptOptions()
        steps = self.config.adapt_steps if options.inner_steps is None else options.inner_steps
        if not 0 <= steps <= MAX_ADAPT_STEPS:
            raise ValueError(f"inner_steps must be between 0 and {MAX_ADAPT_STEPS}")
        lr = options.inner_lr if options.inner_lr is not None else self.config.adapt_lr
        extra = self._output_entries(None, support_y)
        x = self.spec.modality.as_vector(support_x)
        y = (support_y - extra[TARGET_MEAN]) / extra[TARGET_STD] if self.scaling else support_y
        start = self.net.new_task_params(torch.Generator().manual_seed(ADAPT_SEED))
        phi = {k: v.detach().to(self.device, copy=True) for k, v in start.items()}
        self.parts.eval()
        with torch.no_grad():  # shared parameters frozen: only phi's adapted entries move, by Adam steps
            phi = inner_loop(self.net.forward_task, phi, x, y, self.loss, steps, lr, create_graph=False,
                             adapt_keys=self.net.adapt_keys(phi), rule="adam")
        return {**{k: v.detach().contiguous() for k, v in phi.items()}, **extra}

    def predict(self, phi: Params, x: Tensor) -> Tensor:
        net_phi = {k: v for k, v in phi.items() if k not in (TARGET_MEAN, TARGET_STD, NUM_CLASSES)}
        with torch.no_grad():
            out = self.net.forward_task(net_phi, self.spec.modality.as_vector(x.to(self.device)))
            if TARGET_MEAN in phi:
                out = out * phi[TARGET_STD] + phi[TARGET_MEAN]
            if NUM_CLASSES in phi:
                out = out[:, : int(phi[NUM_CLASSES])]
        return out.to(x.device)

    def state(self) -> Params:
        return {k: v.detach().clone().contiguous() for k, v in self.parts.state_dict().items()}

    def load_state(self, tensors: Params) -> None:
        self.parts.load_state_dict(tensors, strict=True)
