"""Backbones shared by the learners. Every net names its output layer `head`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.episodes import ProblemSpec


class BatchNorm(nn.Module):
    """Batch normalisation over (N, H, W) with batch statistics, written from primitive ops.

    Always uses the statistics of the batch it sees, in training and at test time, as the
    MAML paper evaluates (transductive over a task's support or query set). Written from
    primitives because `nn.BatchNorm2d` under `vmap` gave wrong second-order gradients.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:  # x: [B, C, H, W]
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        var = (x - mean).pow(2).mean(dim=(0, 2, 3), keepdim=True)
        x_hat = (x - mean) * torch.rsqrt(var + self.eps)
        return x_hat * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class ConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)
        self.norm = BatchNorm(c_out)

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(F.relu(self.norm(self.conv(x))), 2)


class Conv4(nn.Module):
    """Four 3x3 conv blocks (conv, batch norm, ReLU, 2x2 max-pool) and a linear head.

    The embedding network of Vinyals et al. (2016), used by MAML and ProtoNet on Omniglot.
    """

    def __init__(self, in_channels: int, image_size: int, out_dim: int, channels: int = 64) -> None:
        super().__init__()
        blocks = [ConvBlock(in_channels, channels)] + [ConvBlock(channels, channels) for _ in range(3)]
        self.features = nn.Sequential(*blocks)
        side = image_size
        for _ in range(4):
            side //= 2
        self.embedding_dim = channels * max(side, 1) ** 2
        self.head = nn.Linear(self.embedding_dim, out_dim)

    def embed(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, D]
        return self.features(x).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.embed(x))


class MLP(nn.Module):
    """Fully connected ReLU network; the MAML sinusoid model is MLP(1, [40, 40], 1)."""

    def __init__(self, in_dim: int, hidden: list[int], out_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.features = nn.Sequential(*layers)
        self.embedding_dim = width
        self.head = nn.Linear(width, out_dim)

    def embed(self, x: Tensor) -> Tensor:
        return self.features(x.flatten(1))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.embed(x))


def build_backbone(spec: ProblemSpec, hidden: list[int], channels: int) -> nn.Module:
    """Conv4 for images ([C, H, W] inputs), an MLP for vectors."""
    out_dim = spec.n_way if spec.output == "classification" else spec.output_dim
    if len(spec.input_shape) == 3:
        c, h, w = spec.input_shape
        if h != w:
            raise ValueError(f"Conv4 takes square images, got input shape {spec.input_shape}")
        return Conv4(c, h, out_dim, channels)
    in_dim = 1
    for d in spec.input_shape:
        in_dim *= d
    return MLP(in_dim, hidden, out_dim)
