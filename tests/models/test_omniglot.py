"""Omniglot from the official archive layout, episodes, splits, and a short run that learns."""

from __future__ import annotations

import zipfile

import torch

from models.learners import build_learner
from models.omniglot import OmniglotTasks, load_omniglot, split_characters
from models.recipe import DataSources, build_tasks, resolve
from models.training import evaluate, meta_train


def test_reads_the_official_zips_and_dedupes_shared_alphabets(omniglot_dir, dataset_cache):
    data = load_omniglot(omniglot_dir, dataset_cache)
    # 8 distinct alphabets and 242 distinct characters of 20 drawings (shared/datasets/README.md)
    assert len(set(data.alphabets)) == 8
    assert data.images.shape == (242, 20, 28, 28)
    assert 0.0 <= float(data.images.min()) and float(data.images.max()) <= 1.0
    assert 0.02 < float(data.images.mean()) < 0.3  # strokes are 1 on a 0 background


def test_reads_extracted_folders_like_the_zips(omniglot_dir, tmp_path):
    with zipfile.ZipFile(omniglot_dir / "images_background_small1.zip") as archive:
        members = [n for n in archive.namelist() if "/Latin/character0" in n]
        archive.extractall(tmp_path, members=members)
    data = load_omniglot(tmp_path)
    assert set(data.alphabets) == {"Latin"}
    assert data.images.shape[1:] == (20, 28, 28)
    assert data.characters[0] == "Latin/character01"


def test_episodes_have_the_right_shapes_and_splits_never_overlap(omniglot_dir, dataset_cache):
    data = load_omniglot(omniglot_dir, dataset_cache)
    for by in ("character", "alphabet"):
        splits = split_characters(data, by=by, seed=0)
        train, val, test = (set(splits[s]) for s in ("train", "val", "test"))
        assert not (train & val or train & test or val & test)
        assert len(train | val | test) == 242
        if by == "alphabet":
            alphabets = {s: {data.alphabets[i] for i in splits[s]} for s in splits}
            assert not alphabets["train"] & alphabets["test"]
    tasks = OmniglotTasks(data, split_characters(data), n_way=5, k_shot=2, k_query=3, rotations=True)
    g = torch.Generator().manual_seed(0)
    ep = tasks.sample("test", 1, g)[0]
    assert ep.support_x.shape == (10, 1, 28, 28) and ep.query_x.shape == (15, 1, 28, 28)
    assert ep.support_y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    again = tasks.sample("test", 1, torch.Generator().manual_seed(0))[0]
    assert torch.equal(ep.support_x, again.support_x)  # seeded and reproducible


def test_short_maml_run_beats_chance_on_held_out_characters(omniglot_dir, dataset_cache):
    config = {"steps": 80, "meta_batch_size": 4, "k_query": 5, "channels": 32, "seed": 0}
    recipe = resolve("maml", "omniglot", config)
    tasks = build_tasks(recipe, DataSources(omniglot_dir, dataset_cache))
    learner = build_learner("maml", tasks.spec, recipe.learner)
    meta_train(learner, tasks, 80, 4, seed=0)
    result = evaluate(learner, tasks, episodes=100, seed=0, split="test")
    assert result.mean > 0.2 + 0.2, result  # 5-way chance is 0.2
