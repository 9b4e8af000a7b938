"""meta_train stops a run whose loss is non-finite or explodes (TrainingDiverged, with its step);
`divergence_factor` sets how far above its starting level a loss may go (0: non-finite only)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from models.learners import build_learner
from models.learners.registry import LEARNERS
from models.recipe import ConfigError, DataSources, build_tasks, resolve
from models.training import DIVERGENCE_FACTOR, DivergenceCheck, TrainingDiverged, meta_train


def _run(config: dict, steps: int, factor: float = DIVERGENCE_FACTOR) -> list[float]:
    recipe = resolve("maml", "sinusoid", {"steps": steps, **config})
    tasks = build_tasks(recipe, DataSources(Path("unused")))
    torch.manual_seed(0)
    learner = build_learner("maml", tasks.spec, recipe.learner)
    losses: list[float] = []
    meta_train(learner, tasks, steps, 5, seed=0, on_step=lambda s, t, m: losses.append(m["loss"]), divergence_factor=factor)
    return losses


def test_the_exploding_recipe_stops_at_its_second_step():
    # meta_lr 1.0 and inner_lr 10: the first loss is already ~1e8 (the inner step overshoots),
    # the second ~1e28, and without the check the job ended "succeeded" with an MSE of 5.7e31.
    with pytest.raises(TrainingDiverged, match=r"^diverged at step 2: the training loss .* above 10000 times") as info:
        _run({"meta_lr": 1.0, "inner_lr": 10}, steps=50)
    assert info.value.step == 2


def test_a_healthy_run_is_left_alone():
    losses = _run({}, steps=40)
    assert len(losses) == 40 and all(math.isfinite(v) for v in losses)


def test_factor_zero_checks_only_for_non_finite_losses():
    check = DivergenceCheck(0)
    for step, loss in enumerate([1.0, 1e30, 1e35], start=1):
        check(step, loss)
    with pytest.raises(TrainingDiverged, match="^diverged at step 4: the training loss is nan"):
        check(4, float("nan"))


def test_the_starting_level_is_the_mean_of_the_first_steps():
    check = DivergenceCheck(100)
    for step in range(1, 11):  # level 1.0, then fixed
        check(step, 1.0)
    check(11, 99.0)
    check(12, 0.001)  # falling is fine
    with pytest.raises(TrainingDiverged, match="^diverged at step 13: the training loss 101 is above 100 times its starting level 1"):
        check(13, 101.0)
    with pytest.raises(TrainingDiverged, match="loss is inf"):
        DivergenceCheck()(1, math.inf)


def test_a_state_left_non_finite_by_the_last_step_fails(monkeypatch):
    recipe = resolve("maml", "sinusoid", {"steps": 2})
    tasks = build_tasks(recipe, DataSources(Path("unused")))
    learner = build_learner("maml", tasks.spec, recipe.learner)
    step = learner.meta_train_step

    def poisoned(batch):  # type: ignore[no-untyped-def]
        metrics = step(batch)
        with torch.no_grad():
            next(learner.net.parameters()).fill_(float("nan"))
        return metrics

    monkeypatch.setattr(learner, "meta_train_step", poisoned)
    with pytest.raises(TrainingDiverged, match="^diverged at step 1: non-finite values in"):
        meta_train(learner, tasks, 1, 2, seed=0)


@pytest.mark.parametrize("value", [-1, float("inf"), float("nan")])
def test_divergence_factor_is_a_finite_non_negative_number(value):
    with pytest.raises(ConfigError) as info:
        resolve("protonet", "omniglot", {"divergence_factor": value})
    assert info.value.param in ("divergence_factor", "config.divergence_factor")


def test_every_algorithm_takes_the_key():
    for algorithm, learner in LEARNERS.items():
        dataset = "mtl-synthetic" if learner.trains_on_fixed_tasks else "omniglot"
        assert resolve(algorithm, dataset, {"divergence_factor": 0}).training.divergence_factor == 0
        assert resolve(algorithm, dataset, {}).training.divergence_factor == DIVERGENCE_FACTOR
