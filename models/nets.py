"""Backbones shared by the learners. Every net names its output layer `head`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models import second_order
from models.vmap_state import in_vmap


class Problem(Protocol):
    """What build_backbone reads of a models.episodes.ProblemSpec."""

    output: str
    n_way: int
    output_dim: int
    modality: Any  # models.modality.Modality: it builds the backbone


def batch_norm_from_primitives(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """Batch normalisation over (N, H, W) with batch statistics, from elementwise ops: the
    reference the fused kernel is tested against (same values and second-order gradients)."""
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = (x - mean).pow(2).mean(dim=(0, 2, 3), keepdim=True)
    return (x - mean) * torch.rsqrt(var + eps) * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)


class _ChannelsLastMaxPool(torch.autograd.Function):
    """2x2 max-pool, pooled in channels-last; returns (output, indices) in x's layout (NCHW, or
    channels-last: Conv4 on the CPU). The backward is torch's own (max_pool2d_with_indices_backward
    with the indices, which count positions within a plane whatever the layout), so that the
    gradient keeps the layout of the batch norm before it, and it is differentiable again
    (second-order MAML differentiates the inner loop's gradients)."""

    @staticmethod
    def forward(x: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        y, indices = torch.ops.aten.max_pool2d_with_indices(x.contiguous(memory_format=torch.channels_last), [2, 2], [2, 2])
        if is_channels_last(x):  # a channels-last network stays channels-last
            return y, indices
        return y.contiguous(), indices.contiguous()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor], output: tuple[Tensor, Tensor]) -> None:
        ctx.save_for_backward(inputs[0], output[1])
        ctx.mark_non_differentiable(output[1])

    @staticmethod
    def backward(ctx: Any, grad: Tensor, _: Tensor) -> Tensor:  # type: ignore[override]
        x, indices = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(grad, x, [2, 2], [2, 2], [0, 0], [1, 1], False, indices)


def max_pool_2x2(x: Tensor) -> Tensor:
    """F.max_pool2d(x, 2): the same values and gradients to the bit (first and second order),
    faster on CPU for planes of 14x14 and up.

    torch's max-pool over contiguous NCHW planes costs about 5 ns an element on these CPUs
    (5 images of 64x28x28: 1.2-1.5 ms) where the channels-last kernel vectorises over channels;
    pooling in channels-last with the layout copies takes 0.3 ms without a gradient, and with
    one (_ChannelsLastMaxPool, backward in NCHW) forward and backward take 0.7 ms against 1.7
    (benchmarks/pooling.py). Letting autograd carry the channels-last layout backward instead
    cost what the forward saved: the batch norm's backward got a channels-last gradient for an
    NCHW input. Conv4 on the CPU now runs channels-last throughout (CHANNELS_LAST_ON_CPU), and a
    channels-last x takes the plain call, whose kernels and backward keep that layout (a Conv4-64
    inner step on 5 images, 1 thread, the workers' malloc settings: 5.0 ms through _ChannelsLastMaxPool,
    4.6 ms so; an ad-hoc measurement). Smaller planes,
    vmap (its hidden batch dimension has no channels-last layout) and CUDA take the plain call."""
    if x.dim() != 4 or x.shape[-1] * x.shape[-2] < 196 or x.is_cuda or in_vmap() or is_channels_last(x):
        return F.max_pool2d(x, 2)  # channels-last x: torch's own kernel and backward keep the layout
    if x.requires_grad and torch.is_grad_enabled():
        return _ChannelsLastMaxPool.apply(x)[0]
    y = F.max_pool2d(x.contiguous(memory_format=torch.channels_last), 2)
    return y if is_channels_last(x) else y.contiguous()


def is_channels_last(x: Tensor) -> bool:
    """x [N, C, H, W] laid out channels-last (and not also NCHW, as a one-channel tensor may be)."""
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def channels_last(x: Tensor) -> Tensor:
    """x [N, C, H, W] in channels-last memory, one channel included (torch leaves a one-channel
    tensor's strides NCHW, and a convolution's output then stays NCHW)."""
    if x.shape[1] != 1:
        return x.contiguous(memory_format=torch.channels_last)
    x = x.contiguous()
    h, w = x.shape[-2:]
    return x.as_strided(x.shape, (h * w, 1, w, 1))


def batch_statistics(x: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and biased variance over (N, H, W) of x [N, C, H, W], in two passes: torch.var's
    single-pass kernel took 1.3 ms on 5 images of 64x28x28 where this takes 0.1 ms."""
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    return mean.flatten(), (x - mean).square().mean(dim=(0, 2, 3))


# Keys of a task's stored batch-norm statistics in its parameters: `<norm layer>.task_mean`, `.task_var`.
TASK_STATISTICS = ("task_mean", "task_var")


class BatchNorm(nn.Module):
    """Batch normalisation over (N, H, W) with batch statistics.

    Uses the statistics of the batch it sees in meta-training, as the MAML paper trains
    (transductive over a task's support or query set). A served task normalises with the
    statistics of its support set instead (`task_mean`, `task_var`: empty by default, given
    through the task's parameters by functional_call; see support_statistics), so that the
    answer for an input never depends on the other inputs of its request. Eagerly it is the
    fused `F.batch_norm` kernel without running statistics: a second-order MAML meta-iteration
    (Conv4-64, 5-way 1-shot, 15 queries) took about 40% less CPU time than with the same maths
    from primitive ops (batch_norm_from_primitives), which is what the libraries' nets run too.
    Under `vmap` (meta_batch_mode "vmap") the fused kernel gives wrong second-order gradients
    (torch 2.13), so the primitive ops run there.

    With running_stats=True (learners without an inner loop: ProtoNet, fine-tuning), training
    mode also keeps running averages, and eval mode normalises with them, so a batch of one
    image is scored as it would be in any batch.
    """

    def __init__(self, channels: int, eps: float = 1e-5, running_stats: bool = False, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.running_stats = running_stats
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        if running_stats:
            self.register_buffer("running_mean", torch.zeros(channels))
            self.register_buffer("running_var", torch.ones(channels))
        # Not in state_dict: a task's statistics live in the task's state, never in theta.
        self.register_buffer("task_mean", torch.empty(0), persistent=False)
        self.register_buffer("task_var", torch.empty(0), persistent=False)

    def forward(self, x: Tensor) -> Tensor:  # x: [B, C, H, W]
        if self.task_mean.numel():  # a served task: its support set's statistics
            return self._normalize(x, self.task_mean, self.task_var)
        if not self.running_stats:
            if in_vmap():
                return batch_norm_from_primitives(x, self.weight, self.bias, self.eps)
            if second_order.applies(x):  # an inner step of second-order MAML: a cheaper double backward
                return second_order.batch_norm(x, self.weight, self.bias, self.eps)
            return F.batch_norm(x, None, None, self.weight, self.bias, training=True, eps=self.eps)
        if not self.training:
            return self._normalize(x, self.running_mean, self.running_var)
        # The fused kernel, which also returns the batch's mean and 1 / sqrt(biased variance + eps).
        out, mean, invstd = torch.native_batch_norm(x, self.weight, self.bias, None, None, True, 0.0, self.eps)
        with torch.no_grad():  # running averages of the batch's mean and biased variance
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(invstd.pow(-2) - self.eps, self.momentum)
        return out

    def _normalize(self, x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
        """x normalised with given per-channel statistics ([C] each), then scaled and shifted."""
        shape = (1, -1, 1, 1)
        return (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps) * self.weight.view(shape) + self.bias.view(shape)


def support_statistics(net: nn.Module, forward: Callable[[], Tensor]) -> tuple[dict[str, Tensor], Tensor]:
    """The statistics (mean, biased variance over N, H, W) of the input of every batch-statistics
    BatchNorm of `net` while `forward()` runs, keyed `<layer>.task_mean` / `<layer>.task_var`, and
    forward()'s output: run the task's adapted forward pass on its support set, store the
    statistics with the task, and the output is what the task predicts for its support inputs."""
    found: dict[str, Tensor] = {}
    hooks = []
    for name, module in net.named_modules():
        if isinstance(module, BatchNorm) and not module.running_stats:

            def record(_: nn.Module, args: tuple[Tensor, ...], name: str = name) -> None:
                found[f"{name}.task_mean"], found[f"{name}.task_var"] = batch_statistics(args[0].detach())

            hooks.append(module.register_forward_pre_hook(record))
    try:
        output = forward()
    finally:
        for hook in hooks:
            hook.remove()
    return found, output


def task_statistics(params: dict[str, Tensor]) -> dict[str, Tensor]:
    """The stored batch-norm statistics among a task's parameters."""
    return {k: v for k, v in params.items() if k.endswith(TASK_STATISTICS)}


class ConvBlock(nn.Module):
    """conv 3x3, batch norm, ReLU, 2x2 max-pool.

    Pools before the ReLU: the two commute (ReLU is monotone), so the outputs are the same
    to the bit, and the ReLU and its backward run on a quarter of the elements.
    """

    def __init__(self, c_in: int, c_out: int, running_stats: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)
        self.norm = BatchNorm(c_out, running_stats=running_stats)

    def forward(self, x: Tensor) -> Tensor:
        if second_order.applies(x):  # an inner step of second-order MAML: kernels with a cheaper double backward
            conv = self.conv
            z = second_order.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation)
            return second_order.pool_relu(self.norm(z))
        return F.relu(max_pool_2x2(self.norm(self.conv(x))))


# Conv4 runs channels-last on the CPU (outside vmap, whose hidden batch dimension has no such layout):
# oneDNN's convolutions, torch's batch norm and max-pool are all faster on it there, the first
# layer's one-channel convolution most (5 images of 28x28: 1.19 against 0.14 ms; 75: 19.3 against
# 1.2). benchmarks/layout.py measures both layouts (it turns this off for the NCHW rows).
CHANNELS_LAST_ON_CPU = True


class Conv4(nn.Module):
    """Four 3x3 conv blocks (conv, batch norm, ReLU, 2x2 max-pool) and a linear head.

    The embedding network of Vinyals et al. (2016), used by MAML and ProtoNet on Omniglot.
    Its input goes channels-last on the CPU (CHANNELS_LAST_ON_CPU) and every block keeps that
    layout; the values are the same function of the input, to float rounding.
    """

    def __init__(
        self, in_channels: int, image_size: int, out_dim: int, channels: int = 64, running_stats: bool = False
    ) -> None:
        super().__init__()
        blocks = [ConvBlock(in_channels, channels, running_stats)]
        blocks += [ConvBlock(channels, channels, running_stats) for _ in range(3)]
        self.features = nn.Sequential(*blocks)
        side = image_size
        for _ in range(4):
            side //= 2
        self.embedding_dim = channels * max(side, 1) ** 2
        self.head = nn.Linear(self.embedding_dim, out_dim)

    def embed(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, D]
        if CHANNELS_LAST_ON_CPU and x.dim() == 4 and not x.is_cuda and not in_vmap():
            x = channels_last(x)
        return self.features(x).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.embed(x))


class Standardize(nn.Module):
    """(x - mean) / std per feature, with statistics fixed when the model is built (the vector
    modality's, from the meta-training classes). Buffers outside state_dict: they travel in the
    model's ProblemSpec, so a checkpoint's tensors are the same with or without them."""

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.float(), persistent=False)
        self.register_buffer("std", std.float(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:  # [B, F]
        return (x - self.mean) / self.std


class MLP(nn.Module):
    """Fully connected ReLU network; the MAML sinusoid model is MLP(1, [40, 40], 1).

    `standardize` (default none) runs on the flattened input first: see Standardize."""

    def __init__(self, in_dim: int, hidden: list[int], out_dim: int, standardize: nn.Module | None = None) -> None:
        super().__init__()
        self.standardize = standardize or nn.Identity()
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.features = nn.Sequential(*layers)
        self.embedding_dim = width
        self.head = nn.Linear(width, out_dim)

    def embed(self, x: Tensor) -> Tensor:
        return self.features(self.standardize(x.flatten(1)))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.embed(x))


class SupportNormConv4(nn.Module):
    """Conv4's blocks, normalised by the support set's per-task statistics (stored in phi): the
    black-box learners' image encoder."""

    def __init__(self, in_channels: int, image_size: int, channels: int) -> None:
        super().__init__()
        self.conv4 = Conv4(in_channels, image_size, out_dim=1, channels=channels)
        self.conv4.head = nn.Identity()  # type: ignore[assignment]  # the reader predicts, not Conv4
        self.embedding_dim = self.conv4.embedding_dim

    def forward(self, x: Tensor, stats: dict[str, Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """x: [T, S, C, H, W] -> embeddings [T, S, D] and the statistics used, [T, channels] each.

        Without `stats` each task's own batch statistics are used (the support pass)."""
        t, s = x.shape[:2]
        h = x.flatten(0, 1)  # [T*S, C, H, W]
        used: dict[str, Tensor] = {}
        for i, block in enumerate(self.conv4.features):
            z = block.conv(h).unflatten(0, (t, s))  # [T, S, C', H', W']
            if stats is None:
                mean = z.mean(dim=(1, 3, 4))  # [T, C']
                var = (z - mean[:, None, :, None, None]).pow(2).mean(dim=(1, 3, 4))
            else:
                mean, var = stats[f"norm.{i}.mean"], stats[f"norm.{i}.var"]
            used[f"norm.{i}.mean"], used[f"norm.{i}.var"] = mean, var
            z_hat = (z - mean[:, None, :, None, None]) * torch.rsqrt(var + block.norm.eps)[:, None, :, None, None]
            z = z_hat * block.norm.weight.view(1, 1, -1, 1, 1) + block.norm.bias.view(1, 1, -1, 1, 1)
            h = max_pool_2x2(F.relu(z.flatten(0, 1)))
        return h.flatten(1).unflatten(0, (t, s)), used


class VectorEmbedding(nn.Module):
    """An MLP without its head: the black-box learners' vector encoder."""

    def __init__(self, in_dim: int, hidden: list[int], standardize: nn.Module | None = None) -> None:
        super().__init__()
        self.mlp = MLP(in_dim, hidden, out_dim=1, standardize=standardize)
        self.mlp.head = nn.Identity()  # type: ignore[assignment]
        self.embedding_dim = self.mlp.embedding_dim

    def forward(self, x: Tensor, stats: dict[str, Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        return self.mlp.embed(x.flatten(0, 1)).unflatten(0, x.shape[:2]), {}  # [T, S, ...] -> [T, S, D]


def build_backbone(spec: Problem, hidden: list[int], channels: int, running_stats: bool = False) -> nn.Module:
    """The backbone the spec's modality builds (Conv4 for images, an MLP for vectors); running_stats: see BatchNorm."""
    out_dim = spec.n_way if spec.output == "classification" else spec.output_dim
    return spec.modality.backbone(out_dim, hidden, channels, running_stats)
