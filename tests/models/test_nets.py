"""The nets' fast kernels give what torch's plain ones give: the channels-last max-pool (values,
gradients and second-order gradients, as MAML takes them) and the two-pass batch statistics a
served task stores."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.nets import batch_statistics, max_pool_2x2


@pytest.mark.parametrize("shape", [(5, 64, 28, 28), (3, 8, 15, 17), (2, 4, 7, 7), (1, 1, 14, 14)])
def test_max_pool_2x2_equals_max_pool2d_to_the_bit_with_and_without_a_gradient(shape):
    torch.manual_seed(0)
    x = torch.randn(*shape)
    with torch.no_grad():
        assert torch.equal(max_pool_2x2(x), F.max_pool2d(x, 2))
        assert max_pool_2x2(x).is_contiguous()
    leaf = x.clone().requires_grad_()
    out = max_pool_2x2(leaf)
    assert torch.equal(out, F.max_pool2d(x, 2))
    g = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, leaf, g)
    (expected,) = torch.autograd.grad(F.max_pool2d(leaf, 2), leaf, g)
    assert torch.equal(grad, expected)
    # Second order: dL/dx built with create_graph, and the gradient of <dL/dx, v> with respect to
    # the incoming gradient (second-order MAML differentiates the inner loop's gradients so).
    v, incoming = torch.randn_like(x), g.clone().requires_grad_()
    ours = torch.autograd.grad(max_pool_2x2(leaf), leaf, incoming, create_graph=True)[0]
    plain = torch.autograd.grad(F.max_pool2d(leaf, 2), leaf, incoming, create_graph=True)[0]
    assert torch.equal(ours, plain)
    assert torch.equal(torch.autograd.grad((ours * v).sum(), incoming)[0], torch.autograd.grad((plain * v).sum(), incoming)[0])


def test_second_order_maml_meta_gradient_is_unchanged_by_the_channels_last_pool(monkeypatch):
    """A second-order MAML meta-step on Conv4 (inner loop with create_graph) gives the same
    meta-gradient with the channels-last pool as with torch's plain one."""
    from models import nets

    fast = _maml_meta_gradient()
    monkeypatch.setattr(nets, "max_pool_2x2", lambda x: F.max_pool2d(x, 2))
    plain = _maml_meta_gradient()
    assert all(g.abs().sum() > 0 for g in plain.values())
    for k in plain:
        torch.testing.assert_close(fast[k], plain[k], rtol=1e-5, atol=1e-7)


def test_batch_statistics_are_the_mean_and_biased_variance_over_batch_and_plane():
    torch.manual_seed(0)
    x = torch.randn(5, 16, 14, 14) * 3 + 2
    mean, var = batch_statistics(x)
    expected_var, expected_mean = torch.var_mean(x, dim=(0, 2, 3), unbiased=False)
    assert mean.shape == var.shape == (16,)
    torch.testing.assert_close(mean, expected_mean, rtol=0, atol=1e-5)
    torch.testing.assert_close(var, expected_var, rtol=1e-5, atol=1e-5)


def _maml_meta_gradient() -> dict[str, torch.Tensor]:
    """The meta-gradient of one second-order MAML meta-step on a small Conv4, from fixed weights and data."""
    from models.episodes import Episode, ProblemSpec
    from models.learners import build_learner

    torch.manual_seed(0)
    learner = build_learner("maml", ProblemSpec((1, 28, 28), "classification", n_way=3),
                            {"channels": 8, "inner_lr": 0.4, "inner_steps": 2})
    g = torch.Generator().manual_seed(1)
    episode = Episode(torch.rand(3, 1, 28, 28, generator=g), torch.arange(3),
                      torch.rand(6, 1, 28, 28, generator=g), torch.arange(3).repeat(2))
    learner.meta_train_step([episode])  # leaves the meta-gradient in .grad
    return {k: v.grad.clone() for k, v in learner.net.named_parameters()}


def test_conv4_runs_channels_last_on_the_cpu_and_computes_what_nchw_computes(monkeypatch):
    """Every batch norm of Conv4 sees a channels-last tensor (a one-channel input too, whose strides
    torch would leave NCHW), and the outputs and a second-order MAML meta-gradient are NCHW's to
    float rounding."""
    from models import nets

    torch.manual_seed(0)
    net = nets.Conv4(1, 28, out_dim=5, channels=8)
    layouts: list[bool] = []
    for block in net.features:
        block.norm.register_forward_pre_hook(lambda _, args: layouts.append(nets.is_channels_last(args[0])))
    x = torch.rand(6, 1, 28, 28)
    fast = net(x)
    assert layouts == [True, True, True, True]
    monkeypatch.setattr(nets, "CHANNELS_LAST_ON_CPU", False)
    layouts.clear()
    torch.testing.assert_close(net(x), fast, rtol=1e-5, atol=1e-6)
    assert layouts == [False, False, False, False]

    monkeypatch.setattr(nets, "CHANNELS_LAST_ON_CPU", True)
    cl = _maml_meta_gradient()
    monkeypatch.setattr(nets, "CHANNELS_LAST_ON_CPU", False)
    nchw = _maml_meta_gradient()
    for k in nchw:
        if k.endswith("conv.bias"):  # a bias before batch norm: its true gradient is 0, both are rounding
            assert cl[k].abs().max() < 1e-5 and nchw[k].abs().max() < 1e-5, k
        else:
            assert (cl[k] - nchw[k]).norm() <= 1e-4 * nchw[k].norm(), k


def test_running_statistics_batch_norm_trains_as_the_elementwise_maths():
    """The fused kernel with running averages from its own mean and inverse std: the output, the
    gradients and the running averages of (x - mean) / sqrt(biased var + eps) * w + b."""
    from models.nets import BatchNorm

    torch.manual_seed(0)
    norm = BatchNorm(8, running_stats=True)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1, 1)
    x = (torch.randn(12, 8, 5, 5) * 3 + 1).requires_grad_()
    out = norm(x)
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = (x - mean).pow(2).mean(dim=(0, 2, 3), keepdim=True)
    expected = (x - mean) * torch.rsqrt(var + norm.eps) * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    upstream = torch.randn_like(out)
    ours = torch.autograd.grad(out, [x, norm.weight, norm.bias], upstream)
    reference = torch.autograd.grad(expected, [x, norm.weight, norm.bias], upstream)
    for a, b in zip(ours, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(norm.running_mean, 0.1 * mean.detach().flatten(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(norm.running_var, 0.9 + 0.1 * var.detach().flatten(), rtol=1e-5, atol=1e-6)
