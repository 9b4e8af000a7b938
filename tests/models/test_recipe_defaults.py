"""The defaults chosen by measurement (models/recipe.py RECIPE_DEFAULTS) are what `"config": {}`
gets, a job's own keys win over them, and the default ProtoNet recipe's tasks can be drawn from
every split of the shipped Omniglot (60-way with rotations needs 15 characters a split)."""

from __future__ import annotations

import torch

from models.recipe import DataSources, build_tasks, resolve


def test_protonet_on_omniglot_defaults_to_the_reference_recipe(omniglot_dir, dataset_cache):
    recipe = resolve("protonet", "omniglot", {})
    t, learner = recipe.training, recipe.learner
    assert (t.n_way, t.k_shot, t.k_query, t.meta_batch_size, t.steps) == (60, 1, 5, 1, 3000)
    assert t.rotations and t.augment and t.split_by == "alphabet"
    assert (learner.channels, learner.meta_lr, learner.lr_decay_every) == (32, 0.003, 600)  # type: ignore[attr-defined]
    assert learner.test_time_augmentation == 8  # type: ignore[attr-defined]  # served tasks; evaluation stays plain
    assert t.eval_every == 150 and t.val_episodes == 100  # validation about 20 times a job
    tasks = build_tasks(recipe, DataSources(omniglot_dir, dataset_cache))
    generator = torch.Generator().manual_seed(0)
    for split in ("train", "val", "test"):
        (episode,) = tasks.sample(split, 1, generator)
        assert episode.support_x.shape == (60, 1, 28, 28) and episode.query_x.shape == (300, 1, 28, 28)
        assert sorted(episode.support_y.tolist()) == list(range(60))


def test_a_jobs_own_keys_win_over_the_recipe_defaults():
    recipe = resolve("protonet", "omniglot", {"n_way": 5, "augment": False, "steps": 10})
    assert (recipe.training.n_way, recipe.training.augment, recipe.training.steps) == (5, False, 10)
    assert recipe.training.rotations  # the keys it did not set keep the recipe's


def test_other_pairs_keep_their_own_defaults():
    maml = resolve("maml", "omniglot", {})
    assert (maml.training.n_way, maml.training.steps, maml.training.split_by) == (5, 2000, "character")
    sine = resolve("maml", "sinusoid", {})
    assert (sine.learner.meta_lr, sine.learner.adapt_steps) == (0.01, 10)  # type: ignore[attr-defined]
