"""The meta-training loop and meta-test evaluation, reporting through callbacks."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch

from models.device import to_device
from models.episodes import Split, TaskFamily
from models.learners.base import AdaptOptions, Learner, Params

# on_step(step, total_steps, metrics) is called after every outer update; raising from it
# (for example to cancel) stops training.
StepCallback = Callable[[int, int, dict[str, float]], None]

TEST_SEED_OFFSET = 1_000_003  # meta-test tasks are drawn from a generator apart from training's
DIVERGENCE_FACTOR = 1e4  # TrainingConfig.divergence_factor's default
START_WINDOW = 10  # a run's starting loss level: the mean of its first steps' losses
VALIDATIONS_PER_RUN = 20  # eval_every's default: about this many meta-val evaluations per run
VAL_EPISODES = 100  # val_episodes' default (at most eval_episodes): meta-val tasks per evaluation
Keep = Literal["best", "last"]


class TrainingDiverged(Exception):
    """The training loss became non-finite or exploded: the learner's state is broken."""

    def __init__(self, step: int, reason: str) -> None:
        super().__init__(
            f"diverged at step {step}: {reason}; lower meta_lr (and inner_lr), or raise config.divergence_factor "
            "(0 turns this check off)"
        )
        self.step = step


class DivergenceCheck:
    """Fails a run whose loss is non-finite, or above `factor` times its starting level: the
    mean |loss| of the run's first START_WINDOW steps (of the steps so far, while fewer). A
    factor of 0 checks only for non-finite losses. A resumed run measures its own start."""

    def __init__(self, factor: float = DIVERGENCE_FACTOR) -> None:
        self.factor = factor
        self.start: list[float] = []

    def __call__(self, step: int, loss: float) -> None:
        if not math.isfinite(loss):
            raise TrainingDiverged(step, f"the training loss is {loss}")
        if self.start and self.factor > 0:
            level = sum(self.start) / len(self.start)
            if level > 0 and abs(loss) > self.factor * level:
                raise TrainingDiverged(
                    step, f"the training loss {loss:.4g} is above {self.factor:g} times its starting level {level:.4g}"
                )
        if len(self.start) < START_WINDOW:
            self.start.append(abs(loss))


def meta_train(
    learner: Learner,
    tasks: TaskFamily,
    steps: int,
    meta_batch_size: int,
    seed: int,
    on_step: StepCallback | None = None,
    start_step: int = 0,
    generator: torch.Generator | None = None,
    divergence_factor: float = DIVERGENCE_FACTOR,
    validation: Validation | None = None,
) -> int:
    """Outer updates start_step+1 .. steps. A fresh run seeds the task sampler and torch from
    `seed`; a resumed run passes the step and sampler generator of its checkpoint.

    With `validation`, the learner is scored on meta-val tasks every `validation.every` steps
    (and at the last step), before on_step, whose metrics then carry the latest val_* numbers;
    the run stops early when validation plateaus (validation.patience), and ends holding the
    kept state (validation.keep: the best on meta-val, or the last). Returns the last step run.

    Raises TrainingDiverged when the loss is non-finite or explodes (DivergenceCheck), or when
    the learner's state ends non-finite."""
    if generator is None:
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
    check = DivergenceCheck(divergence_factor)
    last = start_step
    for step in range(start_step + 1, steps + 1):
        batch = to_device(learner.training_batch(tasks, meta_batch_size, generator), learner.device)
        metrics = learner.meta_train_step(batch)
        if "loss" in metrics:
            check(step, metrics["loss"])
        last = step
        if validation is not None:
            if validation.due(step, steps):
                validation.run(learner, step)
            metrics = {**metrics, **validation.latest}
        if on_step is not None:
            on_step(step, steps, metrics)
        if validation is not None and validation.plateaued:
            break
    broken = sorted(name for name, value in learner.state().items() if value.is_floating_point() and not torch.isfinite(value).all())
    if broken:
        raise TrainingDiverged(last, f"non-finite values in {', '.join(broken[:3])}")
    if validation is not None:
        validation.restore_kept(learner)
    return last


def default_eval_every(steps: int) -> int:
    """About VALIDATIONS_PER_RUN evaluations over `steps` (the last step always evaluates)."""
    return max(1, -(-steps // VALIDATIONS_PER_RUN))


@dataclass
class Validation:
    """Meta-val evaluation while training: the same `episodes` tasks each time (drawn from
    `seed`, apart from training's random streams), the best state so far, and a plateau count.

    Metrics: val_<metric> and val_<metric>_ci95 of the latest evaluation with val_step, and
    best_val_<metric> with best_step. Accuracy counts better when higher, MSE when lower; a
    new best must beat the old one strictly. `patience` > 0 stops the run after that many
    evaluations in a row without a new best (0: never stops early)."""

    tasks: TaskFamily
    episodes: int
    seed: int
    every: int
    patience: int = 0
    keep: Keep = "best"
    split: Split = "val"
    best_value: float | None = None
    best_step: int = 0
    best_state: Params | None = None
    since_best: int = 0
    latest: dict[str, float] = field(default_factory=dict)

    def due(self, step: int, steps: int) -> bool:
        return step % self.every == 0 or step == steps

    def run(self, learner: Learner, step: int) -> Evaluation:
        with torch.random.fork_rng(devices=[]):  # training's random stream stays as without validation
            result = evaluate(learner, self.tasks, self.episodes, self.seed, self.split)
        better = self.best_value is None or (
            result.mean > self.best_value if result.metric == "accuracy" else result.mean < self.best_value
        )
        if better:
            self.best_value, self.best_step, self.since_best = result.mean, step, 0
            if self.keep == "best":
                self.best_state = {k: v.detach().clone() for k, v in learner.state().items()}
        else:
            self.since_best += 1
        name = f"val_{result.metric}"
        self.latest = {
            name: result.mean, f"{name}_ci95": result.ci95, "val_step": step,
            f"best_{name}": float(self.best_value), "best_step": self.best_step,  # type: ignore[arg-type]
        }
        return result

    @property
    def plateaued(self) -> bool:
        return self.patience > 0 and self.since_best >= self.patience

    def restore_kept(self, learner: Learner) -> None:
        """Load the best state into the learner when keeping the best (and one was seen)."""
        if self.keep == "best" and self.best_state is not None:
            learner.load_state(self.best_state)

    @property
    def kept_step(self) -> int | None:
        return self.best_step if self.keep == "best" and self.best_state is not None else None

    # A checkpoint carries this state, so that a resumed run keeps the same best.
    def to_checkpoint(self) -> tuple[Params, dict[str, str]]:
        tensors = {BEST + k: v for k, v in (self.best_state or {}).items()}
        meta = {"best_value": self.best_value, "best_step": self.best_step, "since_best": self.since_best, "latest": self.latest}
        return tensors, {VALIDATION_META: json.dumps(meta)}

    def load_checkpoint(self, tensors: Params, metadata: dict[str, str]) -> None:
        if VALIDATION_META not in metadata:
            return
        meta: dict[str, Any] = json.loads(metadata[VALIDATION_META])
        self.best_value, self.best_step, self.since_best = meta["best_value"], meta["best_step"], meta["since_best"]
        self.latest = meta["latest"]
        best = {k[len(BEST):]: v for k, v in tensors.items() if k.startswith(BEST)}
        self.best_state = best or None


BEST = "best."  # checkpoint tensors of the best state on meta-val
VALIDATION_META = "validation"


@dataclass(frozen=True)
class Evaluation:
    metric: str  # "accuracy" or "mse"
    mean: float
    ci95: float  # half-width of the 95% confidence interval over episodes
    episodes: int

    def to_json(self) -> dict[str, float | int | str]:
        return {self.metric: self.mean, f"{self.metric}_ci95": self.ci95, "episodes": self.episodes}


def evaluate(
    learner: Learner,
    tasks: TaskFamily,
    episodes: int,
    seed: int,
    split: Split = "test",
    options: AdaptOptions | None = None,
) -> Evaluation:
    """Mean query metric over a fixed set of `episodes` tasks of `split`, adapted one by one.
    Unless `options` set test_time_augmentation, tasks adapt without it, even where the learner's
    config turns it on for served tasks: validation and a job's metrics stay at one embedding an
    input (ProtoNet's Omniglot recipe: 8 views would take its 600 final episodes from 2 to 13 minutes)."""
    options = options or AdaptOptions()
    if options.test_time_augmentation is None:
        options = replace(options, test_time_augmentation=0)
    generator = torch.Generator().manual_seed(seed + TEST_SEED_OFFSET)
    values: list[float] = []
    metric = "accuracy" if learner.spec.output == "classification" else "mse"
    for ep in tasks.sample(split, episodes, generator):
        ep = to_device(ep, learner.device)
        phi = learner.adapt(ep.support_x, ep.support_y, options)
        values.append(learner.score(learner.predict(phi, ep.query_x), ep.query_y)[metric])
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)
    return Evaluation(metric, mean, 1.96 * math.sqrt(var / len(values)), len(values))
