"""The meta-training loop and meta-test evaluation, reporting through callbacks."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from models.device import to_device
from models.episodes import Split, TaskFamily
from models.learners.base import AdaptOptions, Learner

# on_step(step, total_steps, metrics) is called after every outer update; raising from it
# (for example to cancel) stops training.
StepCallback = Callable[[int, int, dict[str, float]], None]

TEST_SEED_OFFSET = 1_000_003  # meta-test tasks are drawn from a generator apart from training's
DIVERGENCE_FACTOR = 1e4  # TrainingConfig.divergence_factor's default
START_WINDOW = 10  # a run's starting loss level: the mean of its first steps' losses


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
) -> None:
    """Outer updates start_step+1 .. steps. A fresh run seeds the task sampler and torch from
    `seed`; a resumed run passes the step and sampler generator of its checkpoint.

    Raises TrainingDiverged when the loss is non-finite or explodes (DivergenceCheck), or when
    the learner's state ends non-finite."""
    if generator is None:
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
    check = DivergenceCheck(divergence_factor)
    for step in range(start_step + 1, steps + 1):
        batch = to_device(learner.training_batch(tasks, meta_batch_size, generator), learner.device)
        metrics = learner.meta_train_step(batch)
        if "loss" in metrics:
            check(step, metrics["loss"])
        if on_step is not None:
            on_step(step, steps, metrics)
    broken = sorted(name for name, value in learner.state().items() if value.is_floating_point() and not torch.isfinite(value).all())
    if broken:
        raise TrainingDiverged(steps, f"non-finite values in {', '.join(broken[:3])}")


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
    """Mean query metric over a fixed set of `episodes` tasks of `split`, adapted one by one."""
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
