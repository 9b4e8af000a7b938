"""val_fraction and test_fraction: the splits hold their share of the classes, never overlap, are
seeded, and name their classes; a fraction that leaves a split too few classes is refused by key."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from models.arrays import ArrayTasks, read_npz
from models.episodes import SPLITS
from models.mnist import split_digits
from models.omniglot import load_omniglot, split_characters
from models.recipe import ConfigError, DataSources, build_tasks, resolve
from models.splits import SplitError
from tests.e2e.api_support import blobs_npz

N_CHARACTERS = 242  # the shared small Omniglot set (tests/models/test_omniglot.py)


def _disjoint_and_complete(splits: dict, n: int) -> None:
    sets = [set(splits[s]) for s in SPLITS]
    assert sum(len(s) for s in sets) == n and set().union(*sets) == set(range(n))


@pytest.mark.parametrize("fractions", [(0.1, 0.25), (0.05, 0.05), (0.3, 0.0), (0.0, 0.4), (0.2, 0.6)])
def test_omniglot_fractions_hold_and_never_overlap(omniglot_dir, dataset_cache, fractions):
    data = load_omniglot(omniglot_dir, dataset_cache)
    val_fraction, test_fraction = fractions
    by_character = split_characters(data, "character", seed=3, fractions=fractions, min_size=5)
    _disjoint_and_complete(by_character, N_CHARACTERS)
    for split, frac in (("val", val_fraction), ("test", test_fraction)):
        assert len(by_character[split]) == (max(5, round(frac * N_CHARACTERS)) if frac else 0)
    assert by_character == split_characters(data, "character", seed=3, fractions=fractions, min_size=5)  # seeded
    assert by_character != split_characters(data, "character", seed=4, fractions=fractions, min_size=5)

    by_alphabet = split_characters(data, "alphabet", seed=3, fractions=fractions, min_size=5)
    _disjoint_and_complete(by_alphabet, N_CHARACTERS)
    alphabets = {s: {data.alphabets[i] for i in by_alphabet[s]} for s in SPLITS}
    assert not (alphabets["train"] & alphabets["val"] or alphabets["train"] & alphabets["test"] or alphabets["val"] & alphabets["test"])
    for split, frac in (("val", val_fraction), ("test", test_fraction)):
        assert (len(by_alphabet[split]) > 0) == (frac > 0)
        # whole alphabets until the split holds its share, unless meta-train is down to its last alphabet
        assert len(by_alphabet[split]) >= frac * N_CHARACTERS or len(alphabets["train"]) == 1


def test_omniglot_defaults_are_the_old_split_and_the_family_names_its_characters(omniglot_dir, dataset_cache):
    data = load_omniglot(omniglot_dir, dataset_cache)
    recipe = resolve("maml", "omniglot", {})  # protonet's own default splits whole alphabets
    assert (recipe.training.val_fraction, recipe.training.test_fraction) == (0.1, 0.25)
    tasks = build_tasks(recipe, DataSources(omniglot_dir, dataset_cache))
    assert tasks.splits == split_characters(data, "character", seed=0)  # what the benchmarks and e2e tests rebuild
    assert [len(tasks.splits[s]) for s in ("train", "val", "test")] == [158, 24, 60]
    names = tasks.split_names().to_json()
    assert names["kind"] == "classes"
    for split in SPLITS:
        assert names[split]["count"] == len(tasks.splits[split])
        assert names[split]["names"] == [data.characters[i] for i in tasks.splits[split]]
    assert all(n.count("/") == 1 and n.split("/")[1].startswith("character") for n in names["test"]["names"])


def test_omniglot_test_fraction_zero_leaves_no_meta_test_and_evaluates_on_val(omniglot_dir, dataset_cache):
    recipe = resolve("maml", "omniglot", {"val_fraction": 0.05, "test_fraction": 0})
    assert recipe.training.evaluated_on == "val"
    tasks = build_tasks(recipe, DataSources(omniglot_dir, dataset_cache))
    assert tasks.splits["test"] == [] and len(tasks.splits["val"]) == round(0.05 * N_CHARACTERS)
    assert len(tasks.splits["train"]) == N_CHARACTERS - round(0.05 * N_CHARACTERS)
    with pytest.raises(ValueError, match="no characters in split 'test'"):
        tasks.sample("test", 1, torch.Generator().manual_seed(0))
    assert len(tasks.sample("val", 2, torch.Generator().manual_seed(0))) == 2


def test_omniglot_fractions_that_starve_a_split_name_the_key(omniglot_dir, dataset_cache):
    sources = DataSources(omniglot_dir, dataset_cache)
    with pytest.raises(ConfigError, match="lower n_way, val_fraction or test_fraction") as caught:
        build_tasks(resolve("maml", "omniglot", {"val_fraction": 0.49, "test_fraction": 0.5}), sources)
    assert caught.value.param == "config.test_fraction"
    by_alphabet = {"split_by": "alphabet", "n_way": 30, "val_fraction": 0.45, "test_fraction": 0.5}
    with pytest.raises(ConfigError, match="leave meta-training 17 characters, fewer than 30") as caught:
        build_tasks(resolve("maml", "omniglot", by_alphabet), sources)  # one alphabet (Tagalog) is left to train
    assert caught.value.param == "config.test_fraction"
    rotated = resolve("maml", "omniglot", {"rotations": True, "n_way": 8, "val_fraction": 0.001, "test_fraction": 0.001})
    tasks = build_tasks(rotated, sources)  # each rotated character is four classes: two characters make 8 ways
    assert len(tasks.splits["val"]) == len(tasks.splits["test"]) == 2


def test_uploaded_arrays_fractions_hold_and_never_overlap():
    data = read_npz(blobs_npz(n_classes=40, per_class=6))
    for val_fraction, test_fraction in ((0.2, 0.2), (0.1, 0.3), (0.25, 0.0), (0.0, 0.5)):
        tasks = ArrayTasks(data, n_way=3, k_shot=2, k_query=3, seed=5, val_fraction=val_fraction, test_fraction=test_fraction)
        _disjoint_and_complete(tasks.splits, 40)
        assert len(tasks.splits["val"]) == (max(3, round(val_fraction * 40)) if val_fraction else 0)
        assert len(tasks.splits["test"]) == (max(3, round(test_fraction * 40)) if test_fraction else 0)
        again = ArrayTasks(data, n_way=3, k_shot=2, k_query=3, seed=5, val_fraction=val_fraction, test_fraction=test_fraction)
        assert again.splits == tasks.splits
        names = tasks.split_names().to_json()
        assert names["kind"] == "classes"
        for split in SPLITS:  # the npz's label values (0, 10, 20, ...), not indices
            assert names[split]["names"] == [str(10 * i) for i in tasks.splits[split]]
            assert names[split]["count"] == len(tasks.splits[split])
        generator = torch.Generator().manual_seed(0)
        for split in SPLITS:
            if not tasks.splits[split]:
                with pytest.raises(ValueError, match="empty"):
                    tasks.sample(split, 1, generator)
                continue
            members = set(tasks.splits[split])
            for ep in tasks.sample(split, 3, generator):
                owners = {int(data.y[(data.x == row).all(dim=1)][0]) for row in torch.cat([ep.support_x, ep.query_x])}
                assert owners <= members
    with pytest.raises(SplitError, match="lower n_way") as caught:
        ArrayTasks(data, n_way=5, val_fraction=0.1, test_fraction=0.8)
    assert caught.value.param == "test_fraction"


def test_uploaded_regression_tasks_split_by_task_and_uploads_take_their_defaults():
    x = np.linspace(-1, 1, 200).reshape(200, 1)
    task = np.tile(np.arange(20), 10)
    buf = io.BytesIO()
    np.savez(buf, x=x, y=(task + 1.0) * x[:, 0], task=task)
    tasks = ArrayTasks(read_npz(buf.getvalue()), k_shot=3, k_query=4, seed=0, val_fraction=0.1, test_fraction=0.0)
    names = tasks.split_names().to_json()
    assert names["kind"] == "tasks" and names["test"] == {"count": 0, "names": []}
    assert names["val"]["count"] == 2 and names["train"]["count"] == 18
    assert set(names["train"]["names"]) | set(names["val"]["names"]) == {f"task_{t}" for t in range(20)}
    recipe = resolve("maml", "ds_blobs", {})
    assert (recipe.training.val_fraction, recipe.training.test_fraction) == (0.2, 0.2)


def test_mnist_digits_split_in_order_and_are_checked_when_the_job_is_made():
    assert split_digits(0.0, 0.5, n_way=5) == {"train": [0, 1, 2, 3, 4], "val": [], "test": [5, 6, 7, 8, 9]}
    assert split_digits(0.2, 0.3, n_way=2) == {"train": [0, 1, 2, 3, 4], "val": [5, 6], "test": [7, 8, 9]}
    assert resolve("maml", "mnist", {"n_way": 3, "val_fraction": 0.3, "test_fraction": 0.3}).training.val_fraction == 0.3
    with pytest.raises(ConfigError, match="10 digits leave 0 for meta-training") as caught:
        resolve("maml", "mnist", {"val_fraction": 0.1})  # 5-way: a val split of 5 digits and a test split of 5
    assert caught.value.param == "config.test_fraction"


@pytest.mark.parametrize(
    ("dataset", "config", "param", "message"),
    [
        ("omniglot", {"val_fraction": -0.1}, "config.val_fraction", "at least 0 and below 1"),
        ("omniglot", {"test_fraction": 1.0}, "config.test_fraction", "at least 0 and below 1"),
        ("omniglot", {"val_fraction": 0.5, "test_fraction": 0.6}, "config.test_fraction", "must be below 1"),
        ("ds_blobs", {"val_fraction": 0.7, "test_fraction": 0.3}, "config.val_fraction", "must be below 1"),
        ("omniglot", {"val_fraction": 0, "test_fraction": 0}, "config.val_fraction", "both 0"),
        ("omniglot", {"val_fraction": "a lot"}, "config.val_fraction", "must be a number at least 0 and below 1"),
        ("sinusoid", {"test_fraction": 0.2}, "config.test_fraction", "no classes to split"),
        ("mtl-synthetic", {"val_fraction": 0.2}, "config.val_fraction", "no classes to split"),
    ],
)
def test_fractions_are_validated_with_the_key_named(dataset, config, param, message):
    with pytest.raises(ConfigError, match=message) as caught:
        resolve("maml", dataset, config)
    assert caught.value.param == param


def test_families_without_classes_to_split_say_so():
    sine = resolve("maml", "sinusoid", {"val_fraction": None})  # null: the default, which is none here
    assert sine.training.val_fraction is None and sine.training.evaluated_on == "test"
    assert resolve("maml", "sinusoid", sine.to_json()).training == sine.training  # a stored config resolves again
    assert build_tasks(sine, DataSources(omniglot_dir=Path("."))).split_names() is None
    with pytest.raises(ConfigError, match="fixed digit groups"):
        resolve("multitask", "mnist", {"test_fraction": 0.3})
