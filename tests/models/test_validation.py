"""Validation while training: meta_train scores meta-val tasks every `eval_every` steps, keeps the
state best on them (or the last, keep "last"), and stops on a plateau when asked."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.learners import build_learner
from models.recipe import ConfigError, DataSources, build_tasks, resolve
from models.training import Validation, meta_train


def _setup(config: dict):
    recipe = resolve("maml", "sinusoid", {"meta_batch_size": 5, **config})
    tasks = build_tasks(recipe, DataSources(Path("unused")))
    torch.manual_seed(0)
    return recipe, tasks, build_learner("maml", tasks.spec, recipe.learner)


def _state(learner) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in learner.state().items()}


@pytest.mark.parametrize("keep", ["best", "last"])
def test_a_run_whose_validation_gets_worse_at_the_end_keeps_the_earlier_state(keep):
    recipe, tasks, learner = _setup({"steps": 20, "eval_every": 5, "val_episodes": 10, "keep": keep, "meta_lr": 0.01})
    cfg = recipe.training
    validation = Validation(tasks, cfg.val_episodes, cfg.seed, cfg.eval_every, keep=cfg.keep)
    at_validation: dict[int, dict[str, torch.Tensor]] = {}
    seen: list[dict[str, float]] = []

    def on_step(step: int, total: int, metrics: dict[str, float]) -> None:
        seen.append(metrics)
        if metrics.get("val_step") == step:
            at_validation[step] = _state(learner)
        if step == 19:  # break theta just before the last step's validation: it must score worst
            learner.load_state({k: torch.full_like(v, 3.0) for k, v in learner.state().items()})

    last = meta_train(learner, tasks, cfg.steps, cfg.meta_batch_size, cfg.seed, on_step, divergence_factor=0, validation=validation)
    assert last == 20 and sorted(at_validation) == [5, 10, 15, 20]
    final = seen[-1]
    assert final["val_step"] == 20 and final["best_step"] < 20
    assert final["val_mse"] > final["best_val_mse"] and final["val_mse_ci95"] > 0
    assert all("val_mse" in m for m in seen[4:]) and "val_mse" not in seen[3]  # carried from step 5 on
    kept = _state(learner)
    expected = at_validation[final["best_step"]] if keep == "best" else at_validation[20]
    assert all(torch.equal(kept[k], expected[k]) for k in kept)
    assert validation.kept_step == (final["best_step"] if keep == "best" else None)


def test_validation_leaves_training_as_it_was():
    # The same seed with and without validation trains the same theta: validating draws from its
    # own random streams, never from training's.
    runs = []
    for validate in (False, True):
        recipe, tasks, learner = _setup({"steps": 6, "eval_every": 2, "val_episodes": 4, "keep": "last"})
        cfg = recipe.training
        validation = Validation(tasks, cfg.val_episodes, cfg.seed, cfg.eval_every, keep="last") if validate else None
        meta_train(learner, tasks, cfg.steps, cfg.meta_batch_size, cfg.seed, validation=validation)
        runs.append(_state(learner))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_a_plateau_stops_the_run_after_patience_evaluations():
    # meta_lr 1e-30 leaves theta as it is in float32: every evaluation scores the same, none beats the first.
    recipe, tasks, learner = _setup({"steps": 50, "eval_every": 2, "val_episodes": 4, "meta_lr": 1e-30, "early_stopping_patience": 3})
    cfg = recipe.training
    validation = Validation(tasks, cfg.val_episodes, cfg.seed, cfg.eval_every, cfg.early_stopping_patience)
    steps: list[int] = []
    last = meta_train(learner, tasks, cfg.steps, cfg.meta_batch_size, cfg.seed, lambda s, t, m: steps.append(s), validation=validation)
    assert last == 8 and steps[-1] == 8  # best at step 2, then 4, 6 and 8 without a better score
    assert validation.best_step == 2 and validation.plateaued


def test_defaults_and_bad_values():
    cfg = resolve("maml", "sinusoid", {"steps": 2000}).training
    assert cfg.eval_every == 100 and cfg.val_episodes == 100 and cfg.keep == "best" and cfg.early_stopping_patience == 0
    assert resolve("maml", "sinusoid", {"steps": 3, "eval_episodes": 5}).training.val_episodes == 5
    for config, param in [
        ({"eval_every": -1}, "eval_every"), ({"keep": "first"}, "keep"), ({"val_episodes": 0}, "val_episodes"),
        ({"early_stopping_patience": 2, "eval_every": 0}, "early_stopping_patience"),
    ]:
        with pytest.raises(ConfigError) as info:
            resolve("maml", "sinusoid", config)
        assert info.value.param == "config." + param


def test_a_checkpoint_carries_the_best_state_to_a_resumed_run():
    from models.checkpoint import capture, restore

    recipe, tasks, learner = _setup({"steps": 4, "eval_every": 2, "val_episodes": 4})
    cfg = recipe.training
    validation = Validation(tasks, cfg.val_episodes, cfg.seed, cfg.eval_every)
    generator = torch.Generator().manual_seed(cfg.seed)
    meta_train(learner, tasks, 4, cfg.meta_batch_size, cfg.seed, generator=generator, validation=validation)
    ckpt = capture(learner, generator, 4, validation.to_checkpoint())
    _, _, fresh = _setup({"steps": 4})
    resumed = Validation(tasks, cfg.val_episodes, cfg.seed, cfg.eval_every)
    restore(fresh, ckpt.tensors, ckpt.metadata)
    resumed.load_checkpoint(ckpt.tensors, ckpt.metadata)
    assert (resumed.best_step, resumed.best_value, resumed.latest) == (validation.best_step, validation.best_value, validation.latest)
    assert validation.best_state is not None and resumed.best_state is not None
    assert all(torch.equal(resumed.best_state[k], validation.best_state[k]) for k in validation.best_state)
