"""Conv4's kernels for the forward passes whose backward autograd differentiates again.

Second-order MAML takes each inner step's gradients with create_graph and differentiates the
query loss through them, so autograd runs the derivative of every backward node of the support
pass. Three of torch's are costly on a small support set (Conv4-64, 5 images):

- the batch norm's (NativeBatchNormBackwardBackward0) is about 45 elementwise ops and reductions
  over the activations. Written out, every output is a per-channel combination of the incoming
  gradient, the gradient's gradient and the normalised input, from five per-channel means (the
  formula is derived in `batch_norm_double_backward`): fourteen passes.
- ReLU's and max-pool's backward depend on their forward tensors only through a mask and the
  pool's indices, so torch gives those tensors zero gradients (zeros_like), and autograd carries
  the zeros back through the support pass's max-pool, batch norm and ReLU backward, and adds
  them to the real gradients. `_PoolReLU`'s backward is linear in the incoming gradient alone.
- the convolution's computes the weight's term by a convolution over the batch taken as
  channels; `_Conv2dBackward` uses the convolution's own input and weight gradient kernels.

All three are the same maths as torch's to float rounding (tests/models/test_second_order.py, in
float64 against torch's own derivatives). They run inside `second_order()`, which the inner loop
enters where it takes gradients with create_graph (models.learners.inner), on the CPU and outside
vmap; everything else runs torch's kernels. benchmarks/meta_training_speed.py, 2 threads: a
second-order meta-iteration 4% faster with one inner step, 11% with five (benchmarks/RESULTS.md,
session 14).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from models.vmap_state import in_vmap

aten = torch.ops.aten
POOL = [2, 2]
# benchmarks/meta_training_speed.py turns this off for its "ours-torch-kernels" row (torch's derivatives).
ON_CPU = True
SECOND_ORDER: ContextVar[bool] = ContextVar("second_order", default=False)  # each thread's own (meta_batch_mode "threads")


@contextmanager
def second_order() -> Iterator[None]:
    """Within: forward passes whose backward will itself be differentiated (an inner step of
    second-order MAML), so Conv4's blocks take this module's kernels (see `applies`)."""
    token = SECOND_ORDER.set(True)
    try:
        yield
    finally:
        SECOND_ORDER.reset(token)


def applies(x: Tensor) -> bool:
    """Inside second_order(), on the CPU, outside vmap, with a gradient to take."""
    return ON_CPU and SECOND_ORDER.get() and x.device.type == "cpu" and torch.is_grad_enabled() and not in_vmap()


def batch_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """F.batch_norm with batch statistics (training, no running statistics): the same kernels
    forward and backward, and `batch_norm_double_backward` for the backward's derivative."""
    return _BatchNormTrain.apply(x, weight, bias, eps)[0]


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, stride: Any, padding: Any, dilation: Any) -> Tensor:
    """F.conv2d (one group, zero padding): the same kernels forward and backward, and the
    backward's derivative from four convolutions of the support batch's own shapes (see
    `_Conv2dBackward`)."""
    return _Conv2d.apply(x, weight, bias, (tuple(stride), tuple(padding), tuple(dilation)))


def pool_relu(x: Tensor) -> Tensor:
    """ReLU(2x2 max-pool(x)), as Conv4's blocks compute it, whose backward is linear in its
    incoming gradient alone (no zero gradients for the forward's tensors)."""
    return _PoolReLU.apply(x)[0]


class _BatchNormTrain(torch.autograd.Function):
    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        return torch.native_batch_norm(x, weight, bias, None, None, True, 0.0, eps)  # (out, mean, 1 / std)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor, Tensor]) -> None:
        x, weight, _, eps = inputs
        ctx.mark_non_differentiable(output[1], output[2])
        ctx.save_for_backward(x, weight, output[1], output[2])
        ctx.eps = eps

    @staticmethod
    def backward(ctx: Any, grad: Tensor, *_: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, weight, mean, invstd = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: a node whose own backward is the fused formula
            dx, dw, db = _BatchNormBackward.apply(grad, x, weight, mean, invstd, ctx.eps)
        else:
            dx, dw, db = _native_backward(grad, x, weight, mean, invstd, ctx.eps)
        return dx, dw, db, None


def _native_backward(grad: Tensor, x: Tensor, weight: Tensor, mean: Tensor, invstd: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    return aten.native_batch_norm_backward(grad, x, weight, None, None, mean, invstd, True, eps, [True, True, True])


class _BatchNormBackward(torch.autograd.Function):
    """(dL/dy, x, weight) -> (dL/dx, dL/dweight, dL/dbias): torch's kernel forward, the fused
    double backward backward. mean and invstd are x's statistics: constants here, their
    dependence on x is in the formula."""

    @staticmethod
    def forward(grad: Tensor, x: Tensor, weight: Tensor, mean: Tensor, invstd: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        return _native_backward(grad, x, weight, mean, invstd, eps)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        grad, x, weight, mean, invstd, _ = inputs
        ctx.save_for_backward(grad, x, weight, mean, invstd)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, gg_x: Tensor, gg_weight: Tensor, gg_bias: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        grad, x, weight, mean, invstd = ctx.saved_tensors
        d_grad, d_x, d_weight = batch_norm_double_backward(grad, x, weight, mean, invstd, gg_x, gg_weight, gg_bias)
        return d_grad, d_x, d_weight, None, None, None


def batch_norm_double_backward(
    g: Tensor, x: Tensor, gamma: Tensor, mean: Tensor, invstd: Tensor, gg_x: Tensor, gg_gamma: Tensor, gg_beta: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of <gg_x, dx> + <gg_gamma, dgamma> + <gg_beta, dbeta> with respect to (g, x, gamma),
    where (dx, dgamma, dbeta) is the batch norm's backward of g (training: batch statistics).

    Per channel, over its M elements, with s = invstd and x^ = (x - mean) s:
        dbeta = sum g, dgamma = sum g x^, dx = gamma s P(g), P(v) = v - mean(v) - x^ mean(v x^)
    (P projects out the constant and x^, and is self-adjoint), and x^ moves with x as s P(dx).
    With the means a = mean(g), b = mean(g x^), c = mean(gg_x), d = mean(gg_x x^),
    e = mean(gg_x g) - a c - b d:
        d/dg     = gamma s P(gg_x) + gg_gamma x^ + gg_beta
        d/dx     = (gg_gamma s - gamma s^2 d) P(g) - gamma s^2 (b P(gg_x) + e x^)
        d/dgamma = s M e
    Each output is then one combination of g, gg_x and x^ with per-channel coefficients."""
    shape = (1, -1, 1, 1)
    dims = (0, 2, 3)
    m = x.numel() // x.shape[1]
    s = invstd
    xhat = torch.addcmul((-mean * s).view(shape), x, s.view(shape))
    a, c = g.mean(dims), gg_x.mean(dims)
    b, d, f = (g * xhat).mean(dims), (gg_x * xhat).mean(dims), (gg_x * g).mean(dims)
    e = f - a * c - b * d
    gs, gs2 = gamma * s, gamma * s * s
    k_g = gg_gamma * s - gs2 * d  # d/dx's coefficient of P(g)
    # d/dx = k_g (g - a - b x^) - gs2 b (gg_x - c - d x^) - gs2 e x^
    d_x = torch.addcmul((gs2 * b * c - k_g * a).view(shape), k_g.view(shape), g)
    d_x.addcmul_((-gs2 * b).view(shape), gg_x).addcmul_((gs2 * (b * d - e) - k_g * b).view(shape), xhat)
    # d/dg = gs (gg_x - c - d x^) + gg_gamma x^ + gg_beta
    d_g = torch.addcmul((gg_beta - gs * c).view(shape), gs.view(shape), gg_x)
    d_g.addcmul_((gg_gamma - gs * d).view(shape), xhat)
    return d_g, d_x, s * m * e


Geometry = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # stride, padding, dilation


def _conv_backward(grad: Tensor, x: Tensor, weight: Tensor, geometry: Geometry, mask: list[bool]) -> tuple[Tensor | None, ...]:
    stride, padding, dilation = geometry
    return aten.convolution_backward(grad, x, weight, [weight.shape[0]], list(stride), list(padding), list(dilation),
                                     False, [0, 0], 1, mask)


class _Conv2d(torch.autograd.Function):
    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None, geometry: Geometry) -> Tensor:  # type: ignore[override]
        return torch.nn.functional.conv2d(x, weight, bias, *geometry)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        x, weight, bias, geometry = inputs
        ctx.save_for_backward(x, weight)
        ctx.geometry, ctx.has_bias = geometry, bias is not None

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        needs_x = ctx.needs_input_grad[0]
        if torch.is_grad_enabled():  # create_graph: a node whose own backward is _Conv2dBackward's
            dx, dw, db = _Conv2dBackward.apply(grad, x, weight, ctx.geometry, needs_x)
        else:
            dx, dw, db = _conv_backward(grad, x, weight, ctx.geometry, [needs_x, True, True])
        return dx, dw, db if ctx.has_bias else None, None


class _Conv2dBackward(torch.autograd.Function):
    """(dL/dout, x, weight) -> (dL/dx or None, dL/dweight, dL/dbias) with torch's kernel. Its
    derivative is, for the gradients' gradients (gg_x, gg_weight, gg_bias):
        d/d(dL/dout) = conv(gg_x, weight) + conv(x, gg_weight) + gg_bias
        d/dx         = the input gradient of dL/dout through a convolution with gg_weight
        d/dweight    = the weight gradient of dL/dout through a convolution of gg_x
    four convolutions of the support batch's shapes, where torch's (convolution's double backward)
    computes the weight's by a convolution over the batch taken as channels (Conv4-64's 14x14 layer
    on 5 images: 1.42 ms a task at one thread, torch.profiler)."""

    @staticmethod
    def forward(grad: Tensor, x: Tensor, weight: Tensor, geometry: Geometry, needs_x: bool) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        return _conv_backward(grad, x, weight, geometry, [needs_x, True, True])

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        grad, x, weight, geometry, needs_x = inputs
        ctx.save_for_backward(grad, x, weight)
        ctx.geometry = geometry
        ctx.set_materialize_grads(False)  # an unused output (dL/dx of the first layer) has no gradient

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, gg_x: Tensor | None, gg_weight: Tensor | None, gg_bias: Tensor | None) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        grad, x, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.geometry
        d_grad = d_x = d_weight = None
        if ctx.needs_input_grad[0]:
            if gg_weight is not None:
                d_grad = torch.nn.functional.conv2d(x, gg_weight, gg_bias, stride, padding, dilation)
            elif gg_bias is not None:
                d_grad = gg_bias.view(1, -1, 1, 1).expand_as(grad).clone()
            if gg_x is not None:
                term = torch.nn.functional.conv2d(gg_x, weight, None, stride, padding, dilation)
                d_grad = term if d_grad is None else d_grad.add_(term)
        if ctx.needs_input_grad[1] and gg_weight is not None:
            d_x = _conv_backward(grad, x, gg_weight, ctx.geometry, [True, False, False])[0]
        if ctx.needs_input_grad[2] and gg_x is not None:
            d_weight = _conv_backward(grad, gg_x, weight, ctx.geometry, [False, True, False])[1]
        return d_grad, d_x, d_weight, None, None


class _PoolReLU(torch.autograd.Function):
    @staticmethod
    def forward(x: Tensor) -> Tensor:  # type: ignore[override]
        pooled, indices = aten.max_pool2d_with_indices(x, POOL, POOL)
        return torch.relu(pooled), indices  # type: ignore[return-value]

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor], output: tuple[Tensor, Tensor]) -> None:
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(inputs[0], output[0], output[1])

    @staticmethod
    def backward(ctx: Any, grad: Tensor, _: Tensor) -> Tensor:  # type: ignore[override]
        x, out, indices = ctx.saved_tensors
        return _PoolReLUBackward.apply(grad, x, out, indices)


class _PoolReLUBackward(torch.autograd.Function):
    """grad -> dL/dx of ReLU(max-pool(x)): the ReLU's mask, then the pool's scatter to its indices.
    Linear in grad; x, the output and the indices are constants (torch's own derivatives of those
    two backwards give them zero gradients)."""

    @staticmethod
    def forward(grad: Tensor, x: Tensor, out: Tensor, indices: Tensor) -> Tensor:  # type: ignore[override]
        masked = aten.threshold_backward(grad, out, 0)
        return aten.max_pool2d_with_indices_backward(masked, x, POOL, POOL, [0, 0], [1, 1], False, indices)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        ctx.save_for_backward(inputs[2], inputs[3])

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, gg: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        out, indices = ctx.saved_tensors
        # the adjoint: gather at the pool's indices (torch's max_pool_double_backward), then the mask
        gathered = gg.flatten(-2).gather(-1, indices.flatten(-2)).view_as(indices)
        return aten.threshold_backward(gathered, out, 0), None, None, None
