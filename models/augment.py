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
    b = images.shape[0]
    if b == 0:
        return images

    def uniform(half_width: float) -> Tensor:  # [B] in [-half_width, half_width]
        return (torch.rand(b, generator=generator) * 2 - 1) * half_width

    angle = uniform(math.radians(ranges.rotation))
    scale = 1 + uniform(ranges.scale)
    shear = uniform(ranges.shear)
    tx, ty = uniform(2 * ranges.shift), uniform(2 * ranges.shift)  # affine_grid's coordinates span 2
    cos, sin = torch.cos(angle), torch.sin(angle)
    # rotation @ shear (x by y) @ scale, with the shift; maps output coordinates to input ones
    a = torch.stack([torch.stack([cos, cos * shear - sin], -1), torch.stack([sin, sin * shear + cos], -1)], -2)  # [B, 2, 2]
    a = a / scale.view(b, 1, 1)
    theta = torch.cat([a, torch.stack([tx, ty], -1).unsqueeze(-1)], -1).to(images.dtype)  # [B, 2, 3]
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
