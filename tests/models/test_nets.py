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
    from models.episodes import Episode, ProblemSpec
    from models.learners import build_learner

    def meta_gradient() -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        learner = build_learner("maml", ProblemSpec((1, 28, 28), "classification", n_way=3),
                                {"channels": 8, "inner_lr": 0.4, "inner_steps": 2})
        g = torch.Generator().manual_seed(1)
        episode = Episode(torch.rand(3, 1, 28, 28, generator=g), torch.arange(3),
                          torch.rand(6, 1, 28, 28, generator=g), torch.arange(3).repeat(2))
        learner.meta_train_step([episode])  # leaves the meta-gradient in .grad
        return {k: v.grad.clone() for k, v in learner.net.named_parameters()}

    fast = meta_gradient()
    monkeypatch.setattr(nets, "max_pool_2x2", lambda x: F.max_pool2d(x, 2))
    plain = meta_gradient()
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
