"""Random affine augmentation of images, drawn from a torch.Generator (seeded, repeatable).

Each image gets its own rotation, scale, shear and shift (uniform within AffineRanges), as in
the augmented reference ProtoNet on Omniglot; labels and shapes never change. Pixels outside
the source image read 0 (Omniglot's background, strokes are 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class AffineRanges:
    rotation: float = 15.0  # degrees, +-
    scale: float = 0.15  # relative, 1 +- scale
    shear: float = 0.2  # shear factor, +-
    shift: float = 0.1  # fraction of the image's side, +- (2.8 pixels at 28)


AFFINE = AffineRanges()  # the `augment` config key's ranges


def random_affine(images: Tensor, generator: torch.Generator, ranges: AffineRanges = AFFINE) -> Tensor:
    """[B, C, H, W] -> [B, C, H, W], each image warped by its own random affine map."""
    if images.shape[0] == 0:
        return images
    return warp(images, affine_maps(images.shape[0], generator, ranges))


def affine_maps(n: int, generator: torch.Generator, ranges: AffineRanges = AFFINE) -> Tensor:
    """n random affine maps [n, 2, 3] in affine_grid's coordinates (output -> input)."""

    def uniform(half_width: float) -> Tensor:  # [n] in [-half_width, half_width]
        return (torch.rand(n, generator=generator) * 2 - 1) * half_width

    angle = uniform(math.radians(ranges.rotation))
    scale = 1 + uniform(ranges.scale)
    shear = uniform(ranges.shear)
    tx, ty = uniform(2 * ranges.shift), uniform(2 * ranges.shift)  # affine_grid's coordinates span 2
    cos, sin = torch.cos(angle), torch.sin(angle)
    # rotation @ shear (x by y) @ scale, with the shift
    a = torch.stack([torch.stack([cos, cos * shear - sin], -1), torch.stack([sin, sin * shear + cos], -1)], -2)  # [n, 2, 2]
    a = a / scale.view(n, 1, 1)
    return torch.cat([a, torch.stack([tx, ty], -1).unsqueeze(-1)], -1)  # [n, 2, 3]


def warp(images: Tensor, maps: Tensor) -> Tensor:
    """images [B, C, H, W] each by its map [B, 2, 3] (or all by one map [2, 3])."""
    if maps.dim() == 2:
        maps = maps.expand(images.shape[0], 2, 3)
    maps = maps.to(device=images.device, dtype=images.dtype)
    grid = F.affine_grid(maps, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


TTA_SEED = 0  # test-time augmentation's views are the same for every task and every input
MAX_TTA_VIEWS = 32


def test_time_views(views: int) -> Tensor:
    """The fixed maps [views, 2, 3] of test-time augmentation: the identity, then views - 1
    random maps of half AFFINE's ranges drawn from TTA_SEED. Every input gets the same maps, so
    its answer never depends on the rest of its batch."""
    identity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).unsqueeze(0)
    half = AffineRanges(AFFINE.rotation / 2, AFFINE.scale / 2, AFFINE.shear / 2, AFFINE.shift / 2)
    return torch.cat([identity, affine_maps(views - 1, torch.Generator().manual_seed(TTA_SEED), half)])
