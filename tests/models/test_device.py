"""Learners move to a worker's device with their optimizer, and batches follow them there.

Run here on the CPU (no GPU on the development machines); with a GPU, `auto` runs them on CUDA.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from models.device import resolve_device, to_device
from models.episodes import Episode, SupervisedBatch
from models.learners import build_learner
from models.recipe import DataSources, build_tasks, resolve
from models.training import evaluate, meta_train


def test_to_device_moves_tensors_inside_episodes_and_batches():
    ep = Episode(torch.zeros(2, 1), torch.zeros(2), torch.zeros(3, 1), torch.zeros(3))
    moved = to_device([ep, {"b": SupervisedBatch(torch.ones(2), torch.ones(2), 4)}], torch.device("cpu"))
    assert isinstance(moved[0], Episode) and dataclasses.asdict(moved[0]).keys() == dataclasses.asdict(ep).keys()
    assert moved[1]["b"].n_classes == 4


def test_resolve_device_says_what_is_missing():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA_VISIBLE_DEVICES"):
            resolve_device("cuda")


@pytest.mark.parametrize("algorithm", ["maml", "protonet", "finetune", "blackbox"])
def test_a_learner_on_a_device_trains_and_evaluates_there(omniglot_dir, dataset_cache, algorithm):
    recipe = resolve(algorithm, "omniglot", {"channels": 8, "k_query": 2})
    tasks = build_tasks(recipe, DataSources(omniglot_dir, dataset_cache))
    learner = build_learner(algorithm, tasks.spec, recipe.learner).to(resolve_device("auto"))
    meta_train(learner, tasks, 2, 2, seed=0)
    assert all(v.device == learner.device for v in learner.state().values() if v.is_floating_point())
    assert 0.0 <= evaluate(learner, tasks, episodes=2, seed=0).mean <= 1.0
