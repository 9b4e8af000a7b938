"""Random affine augmentation: seeded, per image, shapes and labels unchanged; Omniglot's
`augment` warps training episodes only."""

from __future__ import annotations

import pytest
import torch

from models.augment import AffineRanges, random_affine
from models.omniglot import OmniglotTasks, load_omniglot, split_characters
from models.recipe import ConfigError, resolve


def _strokes() -> torch.Tensor:
    images = torch.zeros(6, 1, 28, 28)
    images[:, :, 8:20, 12:16] = 1.0  # a bar in the middle of each
    return images


def test_is_seeded_per_image_and_keeps_shapes():
    images = _strokes()
    a = random_affine(images, torch.Generator().manual_seed(1))
    b = random_affine(images, torch.Generator().manual_seed(1))
    c = random_affine(images, torch.Generator().manual_seed(2))
    assert a.shape == images.shape and a.dtype == images.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # each image its own map
    assert 0 <= float(a.min()) and float(a.max()) <= 1 + 1e-6
    assert (a.sum() / images.sum()).item() == pytest.approx(1.0, abs=0.35)  # warped, not wiped out


def test_zero_ranges_leave_images_as_they_are():
    images = _strokes()
    same = random_affine(images, torch.Generator().manual_seed(0), AffineRanges(0, 0, 0, 0))
    assert torch.allclose(same, images, atol=1e-5)


def test_omniglot_augments_training_episodes_only(omniglot_dir, dataset_cache):
    data = load_omniglot(omniglot_dir, dataset_cache)
    splits = split_characters(data, by="character", seed=0)
    plain, warped = OmniglotTasks(data, splits, 5, 1, 3), OmniglotTasks(data, splits, 5, 1, 3, augment=True)
    for split in ("train", "val", "test"):
        a = plain.sample(split, 2, torch.Generator().manual_seed(3))
        b = warped.sample(split, 2, torch.Generator().manual_seed(3))
        for x, y in zip(a, b, strict=True):
            assert x.support_x.shape == y.support_x.shape and x.query_x.shape == y.query_x.shape
            assert torch.equal(x.support_y, y.support_y) and torch.equal(x.query_y, y.query_y)
        assert torch.equal(a[0].support_x, b[0].support_x) == (split != "train")
    batch = warped.supervised_batch(8, torch.Generator().manual_seed(0))
    assert batch.x.shape == (8, 1, 28, 28) and batch.y.shape == (8,)


def test_augment_is_an_omniglot_key():
    assert resolve("protonet", "omniglot", {"augment": True}).training.augment
    with pytest.raises(ConfigError) as info:
        resolve("maml", "sinusoid", {"augment": True})
    assert info.value.param == "config.augment"


def test_test_time_views_are_fixed_and_start_with_the_image_itself():
    from models.augment import test_time_views, warp

    views = test_time_views(4)
    assert views.shape == (4, 2, 3) and torch.equal(views, test_time_views(4))
    images = _strokes()
    assert torch.allclose(warp(images, views[0]), images, atol=1e-5)
    assert not torch.allclose(warp(images, views[1]), images, atol=1e-3)
