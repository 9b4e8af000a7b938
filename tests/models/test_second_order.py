"""Conv4's second-order kernels (models.second_order: convolution, batch norm, ReLU of a max-pool)
give torch's own derivatives: the same values and first derivatives to the bit, second
derivatives to float64 rounding, and the same second-order MAML meta-gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models import second_order
from models.episodes import Episode, ProblemSpec
from models.nets import BatchNorm, batch_norm_from_primitives, channels_last
from tests.models.meta_gradients import float64_meta_gradient


def _derivatives(fn, inputs, target):  # type: ignore[no-untyped-def]
    """First derivatives of a loss (with create_graph), and the derivatives of a function of
    them, with respect to the inputs: what second-order MAML takes."""
    loss = (fn(*inputs) * target).pow(2).sum()
    first = torch.autograd.grad(loss, inputs, create_graph=True)
    second = torch.autograd.grad(sum((g * g.detach().flip(0)).sum() for g in first), inputs, allow_unused=True,
                                 materialize_grads=True)
    return [*first, *second]


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_batch_norm_gives_torchs_values_and_derivatives(layout):
    torch.manual_seed(0)
    x = torch.randn(5, 3, 6, 6, dtype=torch.float64) * 2 + 1
    x = (channels_last(x) if layout == "channels_last" else x).requires_grad_()
    weight = torch.empty(3, dtype=torch.float64).uniform_(0.5, 1.5).requires_grad_()
    bias = torch.empty(3, dtype=torch.float64).uniform_(-0.5, 0.5).requires_grad_()
    target = torch.randn(5, 3, 6, 6, dtype=torch.float64)

    def torchs(x, w, b):  # type: ignore[no-untyped-def]
        return F.batch_norm(x, None, None, w, b, training=True, eps=1e-5)

    def ours(x, w, b):  # type: ignore[no-untyped-def]
        return second_order.batch_norm(x, w, b, 1e-5)

    assert torch.equal(ours(x, weight, bias), torchs(x, weight, bias))  # the same kernel
    g = torch.randn(5, 3, 6, 6, dtype=torch.float64)
    first = torch.autograd.grad(ours(x, weight, bias), (x, weight, bias), g)
    assert all(torch.equal(a, b) for a, b in zip(first, torch.autograd.grad(torchs(x, weight, bias), (x, weight, bias), g), strict=True))
    expected = _derivatives(torchs, (x, weight, bias), target)
    reference = _derivatives(lambda x, w, b: batch_norm_from_primitives(x, w, b, 1e-5), (x, weight, bias), target)
    for a, b, c in zip(_derivatives(ours, (x, weight, bias), target), expected, reference, strict=True):
        assert a.abs().max() > 0
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)
        assert torch.allclose(a, c, rtol=1e-9, atol=1e-12)
    # every input of the double backward, the incoming gradient included
    assert torch.autograd.gradgradcheck(ours, (x.detach().clone().requires_grad_(), weight, bias))


@pytest.mark.parametrize("input_grad", [True, False])  # False: the first layer, whose input is the images
def test_conv2d_gives_torchs_values_and_derivatives(input_grad):
    torch.manual_seed(0)
    x = channels_last(torch.randn(3, 4, 7, 7, dtype=torch.float64)).requires_grad_(input_grad)
    weight = torch.randn(5, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(5, dtype=torch.float64, requires_grad=True)
    target = torch.randn(3, 5, 7, 7, dtype=torch.float64)
    inputs = (x, weight, bias) if input_grad else (weight, bias)

    def torchs(*args):  # type: ignore[no-untyped-def]
        return F.conv2d(*((x, *args) if not input_grad else args), padding=1)

    def ours(*args):  # type: ignore[no-untyped-def]
        x_, w, b = (x, *args) if not input_grad else args
        return second_order.conv2d(x_, w, b, (1, 1), (1, 1), (1, 1))

    assert torch.equal(ours(*inputs), torchs(*inputs))  # the same kernel
    g = torch.randn_like(target)
    first = torch.autograd.grad(ours(*inputs), inputs, g)
    assert all(torch.equal(a, b) for a, b in zip(first, torch.autograd.grad(torchs(*inputs), inputs, g), strict=True))
    for a, b in zip(_derivatives(ours, inputs, target), _derivatives(torchs, inputs, target), strict=True):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)
    assert torch.autograd.gradgradcheck(ours, inputs)


@pytest.mark.parametrize("shape", [(5, 4, 28, 28), (3, 2, 7, 7), (2, 3, 3, 3)])
def test_pool_relu_gives_torchs_values_and_derivatives(shape):
    torch.manual_seed(0)
    x = channels_last(torch.randn(*shape, dtype=torch.float64)).requires_grad_()

    def torchs(x):  # type: ignore[no-untyped-def]
        return F.relu(F.max_pool2d(x, 2))

    out = second_order.pool_relu(x)
    assert torch.equal(out, torchs(x))
    g = torch.randn_like(out).requires_grad_()
    (ours,) = torch.autograd.grad(out, x, g, create_graph=True)
    (plain,) = torch.autograd.grad(torchs(x), x, g, create_graph=True)
    assert torch.equal(ours, plain)
    v = torch.randn_like(x)
    # with respect to the incoming gradient, and to x (zero almost everywhere: torch says zeros)
    ours_second = torch.autograd.grad((ours * v).sum(), (g, x), allow_unused=True, materialize_grads=True)
    plain_second = torch.autograd.grad((plain * v).sum(), (g, x), allow_unused=True, materialize_grads=True)
    assert ours_second[0].abs().max() > 0
    assert all(torch.equal(a, b) for a, b in zip(ours_second, plain_second, strict=True))


def _counted(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """models.second_order.<name> wrapped to count its calls: one 1 a call in the returned list."""
    calls: list[int] = []
    original = getattr(second_order, name)

    def spy(*args):  # type: ignore[no-untyped-def]
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(second_order, name, spy)
    return calls


def test_the_kernels_run_only_inside_second_order_with_a_gradient_to_take(monkeypatch):
    norm = BatchNorm(3)
    x = torch.randn(4, 3, 5, 5)
    calls = _counted(monkeypatch, "batch_norm")
    norm(x)
    with torch.no_grad(), second_order.second_order():
        norm(x)  # no gradient to take
    assert not calls
    with second_order.second_order():
        norm(x)
    assert calls == [1]
    norm(x)  # left: torch's kernel again
    assert calls == [1]


def _meta_gradient(algorithm: str, steps: int) -> dict[str, torch.Tensor]:
    """One meta-step's meta-gradient in float64, on two random 3-way 1-shot tasks of 28x28 images."""
    g = torch.Generator().manual_seed(1)
    episodes = [Episode(torch.rand(3, 1, 28, 28, generator=g), torch.arange(3), torch.rand(6, 1, 28, 28, generator=g),
                        torch.arange(3).repeat(2)) for _ in range(2)]
    spec = ProblemSpec((1, 28, 28), "classification", n_way=3)
    return float64_meta_gradient(algorithm, spec, episodes, inner_steps=steps, meta_batch_mode="loop")


@pytest.mark.parametrize(("algorithm", "steps"), [("maml", 1), ("maml", 3), ("metasgd", 2)])
def test_second_order_maml_meta_gradient_is_torchs(algorithm, steps, monkeypatch):
    calls = _counted(monkeypatch, "batch_norm_double_backward")
    ours = _meta_gradient(algorithm, steps)
    assert len(calls) == 4 * steps * 2  # every block, inner step and task
    monkeypatch.setattr(second_order, "applies", lambda x: False)
    torchs = _meta_gradient(algorithm, steps)
    assert len(calls) == 4 * steps * 2
    for key, grad in torchs.items():
        assert grad.abs().max() > 0, key
        assert torch.allclose(ours[key], grad, rtol=1e-8, atol=1e-12), key
