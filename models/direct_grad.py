"""Conv4's support-loss gradients without autograd, for serving's inner loop.

Adapting a served task (MAML, first-order MAML, Meta-SGD) needs the gradients of the support
set's cross-entropy at each step and nothing else: no graph is kept between steps. Autograd
builds a graph per step, saves what each op's backward needs and runs its engine over the
nodes; here the forward keeps those tensors itself and the backward calls the same kernels
autograd's formulas call (convolution_backward, native_batch_norm_backward,
max_pool2d_with_indices_backward, threshold_backward), in the order the graph would. The
gradients are autograd's to float rounding (tests/models/test_direct_grad.py).

Conv4-64, 5-way 1-shot, one step on the CPU at 1 thread (the workers' malloc settings): about
4.3 ms against 5.0-5.5 ms through functional_call and autograd; the convolutions' own kernels are
3.4 ms of either (benchmarks/adaptation_speed.py measures the whole adaptation).

Only where it is the same maths: a Conv4 whose batch norms use batch statistics (the MAML
family's), on the CPU, outside vmap, with grad mode off (serving). `conv4_support_pass` is the
pass after the last step: the statistics a served task stores and what it predicts for its
support inputs (models.nets.support_statistics, without hooks or functional_call).
`conv4_predict` is a served task's prediction the same way, and `fold_batch_norms` the state the
API caches for it: each block's batch norm, which normalises with the task's fixed support
statistics, folded into its convolution.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from models.nets import BatchNorm, Conv4, ConvBlock, batch_statistics, channels_last
from models.vmap_state import in_vmap

Params = dict[str, Tensor]
Gradients = Callable[[Params, Tensor, Tensor], Params]

aten = torch.ops.aten
POOL = [2, 2]

# Serving's step gradients come from here wherever `applies` holds; benchmarks/adaptation_speed.py
# turns it off for the "ours, autograd" row.
DIRECT_ON_CPU = True

# A folded serving state (fold_batch_norms) holds, per block, `features.<i>.conv.folded_weight` and
# `.folded_bias`, and the head: nothing else, so no other path can mistake it for a task's parameters.
FOLDED = ("folded_weight", "folded_bias")


def direct_gradients(net: torch.nn.Module, x: Tensor) -> Gradients | None:
    """(params, x, y) -> d cross_entropy(net(x; params), y) / d params, every parameter, where
    the direct path is the same maths as autograd through `net` (see the module's docstring);
    None where it is not, and the caller differentiates with autograd."""
    if not applies(net, x):
        return None
    assert isinstance(net, Conv4)
    return lambda params, x, y: conv4_cross_entropy_gradients(net, params, x, y)


def applies(net: torch.nn.Module, x: Tensor) -> bool:
    """`net` is a batch-statistics Conv4 and x a float32 image batch on the CPU, with grad mode
    off and outside vmap."""
    if torch.is_grad_enabled() or in_vmap():
        return False
    if x.dim() != 4 or x.dtype != torch.float32 or x.device.type != "cpu":
        return False
    return is_direct_conv4(net)


def is_direct_conv4(net: torch.nn.Module) -> bool:
    """`net` is a Conv4 of the kind the direct path computes: every block a convolution (zero
    padding, one group) and a batch norm with batch statistics and no task statistics of its own."""
    if not DIRECT_ON_CPU or not isinstance(net, Conv4):
        return False
    layers = blocks(net)
    return len(layers) == len(net.features) and all(
        isinstance(block.norm, BatchNorm) and not block.norm.running_stats and not block.norm.task_mean.numel()  # type: ignore[operator]
        and block.conv.groups == 1 and block.conv.padding_mode == "zeros"
        for block in layers
    )


def blocks(net: Conv4) -> list[ConvBlock]:
    return [block for block in net.features if isinstance(block, ConvBlock)]


def conv4_cross_entropy_gradients(net: Conv4, params: Params, x: Tensor, y: Tensor) -> Params:
    """Gradients of F.cross_entropy(net(x; params), y) (mean over the batch) for every key of params."""
    layers = blocks(net)
    logits, saved = _forward(layers, params, x, keep=True)
    features = saved.pop()[0]  # [B, D]
    d = torch.softmax(logits, dim=1)  # d loss / d logits = (softmax - one-hot) / B
    d[torch.arange(len(y)), y] -= 1
    d /= len(y)
    grads = {"head.weight": d.t() @ features, "head.bias": d.sum(0)}
    h_shape = saved[-1][-1].shape  # the last block's output, [B, C, H, W]
    dh = channels_last((d @ params["head.weight"]).view(h_shape))  # flatten's order is NCHW's
    for i in reversed(range(len(saved))):
        h_in, z, mean, invstd, normed, indices, out = saved[i]
        block = layers[i]
        conv, norm = f"features.{i}.conv.", f"features.{i}.norm."
        d_pooled = aten.threshold_backward(dh, out, 0)  # ReLU after the pool (ConvBlock)
        d_normed = aten.max_pool2d_with_indices_backward(d_pooled, normed, POOL, POOL, [0, 0], [1, 1], False, indices)
        dz, grads[norm + "weight"], grads[norm + "bias"] = aten.native_batch_norm_backward(
            d_normed, z, params[norm + "weight"], None, None, mean, invstd, True, block.norm.eps, [True, True, True]
        )
        w = params[conv + "weight"]
        dh, grads[conv + "weight"], grads[conv + "bias"] = aten.convolution_backward(
            dz, h_in, w, [w.shape[0]], list(block.conv.stride), list(block.conv.padding), list(block.conv.dilation),
            False, [0, 0], 1, [i > 0, True, True],
        )
    return grads


def conv4_predicts(net: torch.nn.Module, phi: Params, x: Tensor) -> bool:
    """Whether conv4_predict gives `net`'s prediction for x with the served task state phi: phi is
    folded (it predicts nowhere else), or the direct path applies (see `applies`) and phi holds
    every block's support statistics."""
    if is_folded(phi):
        return True
    return applies(net, x) and has_statistics(net, phi)  # type: ignore[arg-type]


def has_statistics(net: Conv4, phi: Params) -> bool:
    return all(
        f"features.{i}.norm.task_mean" in phi and f"features.{i}.norm.task_var" in phi for i in range(len(blocks(net)))
    )


def is_folded(phi: Params) -> bool:
    return "features.0.conv." + FOLDED[0] in phi


def fold_batch_norms(net: Conv4, phi: Params) -> Params:
    """A served task's state as convolutions alone, the form the API caches (MAML.serving_state).

    A served task's batch norm is per-channel affine, (z - mean) * gamma / sqrt(var + eps) + beta
    with the task's support statistics, and follows its convolution, so it folds into it: weight
    * scale and (bias - mean) * scale + beta with scale = gamma / sqrt(var + eps). A prediction then
    runs no batch norm: Conv4-64 at 1 thread, one 28x28 image 0.61 -> 0.47 ms, 16 images of one
    task 5.5-8.8 -> 4.8 ms (ad hoc; benchmarks/RESULTS.md, session 16). The same function to float
    rounding (tests/models/test_direct_grad.py). Convolution weights channels-last, the layout of
    the predictions' activations: oneDNN then reorders no weights per prediction. phi needs every
    block's support statistics (has_statistics)."""
    folded: Params = {"head.weight": phi["head.weight"], "head.bias": phi["head.bias"]}
    for i, block in enumerate(blocks(net)):
        conv, norm = f"features.{i}.conv.", f"features.{i}.norm."
        scale = phi[norm + "weight"] * torch.rsqrt(phi[norm + "task_var"] + block.norm.eps)
        weight = torch.empty_like(phi[conv + "weight"], memory_format=torch.channels_last)  # one new tensor, not two
        folded[conv + FOLDED[0]] = torch.mul(phi[conv + "weight"], scale.view(-1, 1, 1, 1), out=weight)
        folded[conv + FOLDED[1]] = (phi[conv + "bias"] - phi[norm + "task_mean"]) * scale + phi[norm + "bias"]
    return folded


def conv4_predict(net: Conv4, phi: Params, x: Tensor) -> Tensor:
    """Logits of a served task for x: net's forward with phi's weights, its batch norms normalising
    with the task's support statistics (models.nets.BatchNorm with task_mean set), without
    functional_call swapping the module's tensors: from a folded state (fold_batch_norms)
    convolutions alone, else one fused eval-mode batch norm a block.

    The same function as MAML.predict_with through functional_call, to float rounding
    (tests/models/test_direct_grad.py); Conv4-64, one 28x28 image, 1 thread: 0.43 against 0.95 ms
    (an ad-hoc measurement; benchmarks/http_predictions.py measures served predictions)."""
    folded = is_folded(phi)
    h = channels_last(x.to(phi["head.weight"].dtype))
    for i, block in enumerate(blocks(net)):
        conv, norm = f"features.{i}.conv.", f"features.{i}.norm."
        weight, bias = FOLDED if folded else ("weight", "bias")
        z = F.conv2d(h, phi[conv + weight], phi[conv + bias], block.conv.stride, block.conv.padding,  # type: ignore[arg-type]
                     block.conv.dilation)
        if not folded:
            z = F.batch_norm(z, phi[norm + "task_mean"], phi[norm + "task_var"], phi[norm + "weight"], phi[norm + "bias"],
                             training=False, eps=block.norm.eps)
        h = F.max_pool2d(z, POOL).relu_()  # the pool's maximum without its indices
    return F.linear(h.flatten(1), phi["head.weight"], phi["head.bias"])


def conv4_support_pass(net: Conv4, params: Params, x: Tensor) -> tuple[Params, Tensor]:
    """(batch-norm statistics keyed `features.<i>.norm.task_mean` / `.task_var`, logits) of one
    batch-statistics pass of net over x with params: support_statistics' result for the MAML family."""
    statistics: Params = {}
    logits, _ = _forward(blocks(net), params, x, keep=False, statistics=statistics)
    return statistics, logits


def _forward(
    layers: list[ConvBlock], params: Params, x: Tensor, keep: bool, statistics: Params | None = None
) -> tuple[Tensor, list[tuple[Tensor, ...]]]:
    """Logits, and with `keep` what the backward needs: per block (input, conv output, batch
    mean, inverse std, normalised, pool indices, output), then (flattened features,)."""
    saved: list[tuple[Tensor, ...]] = []
    h = channels_last(x)
    for i, block in enumerate(layers):
        conv, norm = f"features.{i}.conv.", f"features.{i}.norm."
        z = F.conv2d(h, params[conv + "weight"], params[conv + "bias"], block.conv.stride, block.conv.padding,  # type: ignore[arg-type]
                     block.conv.dilation)  # [B, C, H, W], channels-last
        if statistics is not None:
            statistics[norm + "task_mean"], statistics[norm + "task_var"] = batch_statistics(z)
        normed, mean, invstd = torch.native_batch_norm(
            z, params[norm + "weight"], params[norm + "bias"], None, None, True, 0.0, block.norm.eps
        )
        pooled, indices = aten.max_pool2d_with_indices(normed, POOL, POOL)
        out = torch.relu(pooled)
        if keep:
            saved.append((h, z, mean, invstd, normed, indices, out))
        h = out
    features = h.flatten(1)  # [B, D]
    if keep:
        saved.append((features,))
    return F.linear(features, params["head.weight"], params["head.bias"]), saved
