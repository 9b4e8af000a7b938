"""n independent MLPs with their parameters stacked on a leading dimension.

One network's parameters (a slice) are a plain dict, so the same function runs a training
task's network, a new task's network being fitted, or a mean of several networks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Params = dict[str, Tensor]


def mlp_apply(params: Params, x: Tensor, final_relu: bool = False) -> Tensor:
    """One MLP from params {layer{j}.weight [out, in], layer{j}.bias [out]}; x [B, in] -> [B, out]."""
    n_layers = sum(1 for k in params if k.endswith(".weight"))
    h = x
    for j in range(n_layers):
        h = F.linear(h, params[f"layer{j}.weight"], params[f"layer{j}.bias"])
        if j < n_layers - 1 or final_relu:
            h = F.relu(h)
    return h


def linear_init(n: int, fan_out: int, fan_in: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """nn.Linear's default initialisation, n times: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    w = (torch.rand(n, fan_out, fan_in, generator=generator) * 2 - 1) * bound  # [n, out, in]
    b = (torch.rand(n, fan_out, generator=generator) * 2 - 1) * bound  # [n, out]
    return w, b


class StackedMLP(nn.Module):
    """n MLPs in_dim -> widths -> out_dim (ReLU between layers, and after the last if final_relu)."""

    def __init__(self, n: int, in_dim: int, widths: list[int], out_dim: int, final_relu: bool = False) -> None:
        super().__init__()
        self.n, self.final_relu = n, final_relu
        self.dims = [in_dim, *widths, out_dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(self.dims[:-1], self.dims[1:], strict=True):
            w, b = linear_init(n, fan_out, fan_in)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))

    @property
    def n_layers(self) -> int:
        return len(self.weights)

    def slice(self, i: int) -> Params:
        """Network i's parameters (views: gradients reach the stack)."""
        out: Params = {}
        for j in range(self.n_layers):
            out[f"layer{j}.weight"], out[f"layer{j}.bias"] = self.weights[j][i], self.biases[j][i]
        return out

    def mean(self) -> Params:
        """The elementwise mean of the n networks, detached."""
        out: Params = {}
        for j in range(self.n_layers):
            out[f"layer{j}.weight"] = self.weights[j].detach().mean(0)
            out[f"layer{j}.bias"] = self.biases[j].detach().mean(0)
        return out

    def fresh(self, generator: torch.Generator) -> Params:
        """A newly initialised network of the same shape."""
        out: Params = {}
        for j, (fan_in, fan_out) in enumerate(zip(self.dims[:-1], self.dims[1:], strict=True)):
            w, b = linear_init(1, fan_out, fan_in, generator)
            out[f"layer{j}.weight"], out[f"layer{j}.bias"] = w[0], b[0]
        return out

    def forward_all(self, x: Tensor) -> Tensor:
        """Every network on the same inputs: x [B, in] -> [B, n, out]."""
        h = torch.einsum("bi,noi->bno", x, self.weights[0]) + self.biases[0]
        for j in range(1, self.n_layers):
            h = F.relu(h)
            h = torch.einsum("bni,noi->bno", h, self.weights[j]) + self.biases[j]
        return F.relu(h) if self.final_relu else h


def prefixed(prefix: str, params: Params) -> Params:
    return {f"{prefix}.{k}": v for k, v in params.items()}


def unprefixed(prefix: str, params: Params) -> Params:
    cut = len(prefix) + 1
    return {k[cut:]: v for k, v in params.items() if k.startswith(prefix + ".")}
