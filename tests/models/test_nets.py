"""The nets' fast kernels give what torch's plain ones give: the channels-last max-pool (taken
where no gradient flows through it) and the two-pass batch statistics a served task stores."""

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


def test_batch_statistics_are_the_mean_and_biased_variance_over_batch_and_plane():
    torch.manual_seed(0)
    x = torch.randn(5, 16, 14, 14) * 3 + 2
    mean, var = batch_statistics(x)
    expected_var, expected_mean = torch.var_mean(x, dim=(0, 2, 3), unbiased=False)
    assert mean.shape == var.shape == (16,)
    torch.testing.assert_close(mean, expected_mean, rtol=0, atol=1e-5)
    torch.testing.assert_close(var, expected_var, rtol=1e-5, atol=1e-5)
