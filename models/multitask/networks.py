"""Task-conditioned networks f_theta(y | x, z_i): how a network conditions on the task is how
it shares parameters.

Every network splits its parameters into shared ones (module parameters) and one task's own
(phi, a dict of tensors): `task_params(i)` is training task i's phi (live views, so training
reaches them), `new_task_params()` a starting phi for a new task, and `forward_task(phi, x)`
runs the network for one task. Inputs are flat vectors [B, in_dim].
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.multitask.stacked import Params, StackedMLP, mlp_apply, prefixed, unprefixed

Architecture = Literal["concat", "gating", "multi-head", "separate", "soft-sharing", "mmoe"]
ARCHITECTURES: tuple[str, ...] = ("concat", "gating", "multi-head", "separate", "soft-sharing", "mmoe")


class TaskConditionedNet(nn.Module, ABC):
    def __init__(self, num_tasks: int) -> None:
        super().__init__()
        self.num_tasks = num_tasks

    @abstractmethod
    def task_params(self, task: int) -> Params:
        """Training task `task`'s phi, as views of the module's parameters."""

    @abstractmethod
    def new_task_params(self, generator: torch.Generator) -> Params:
        """A starting phi for a task the network was not trained on (detached)."""

    @abstractmethod
    def forward_task(self, phi: Params, x: Tensor) -> Tensor:
        """x [B, in_dim] -> outputs [B, out_dim] of the task whose phi is given."""

    def adapt_keys(self, phi: Params) -> list[str]:
        """The entries of a new task's phi that adaptation fits (the rest stay as given)."""
        return list(phi)

    def penalty(self) -> Tensor:
        """A regulariser added to the training loss (soft parameter sharing)."""
        return torch.zeros(())


class TaskEmbeddings(nn.Module):
    """z_i: a learned embedding per task, or a fixed one-hot vector (dim = num_tasks)."""

    def __init__(self, num_tasks: int, kind: Literal["learned", "one-hot"], dim: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "one-hot":
            self.register_buffer("table", torch.eye(num_tasks))  # [T, T], not trained
        else:
            self.table = nn.Parameter(torch.randn(num_tasks, dim) * 0.5)  # [T, e]

    @property
    def dim(self) -> int:
        return int(self.table.shape[1])

    def new(self) -> Tensor:
        """A new task starts at the mean of the training tasks' embeddings."""
        return self.table.detach().mean(0).clone()  # [e]


def _linear_layers(dims: list[int], extra_in: dict[int, int]) -> nn.ModuleList:
    return nn.ModuleList(nn.Linear(a + extra_in.get(j, 0), b) for j, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)))


class ConcatNet(TaskConditionedNet):
    """One shared MLP reading [h; z_i], z_i concatenated before layer `concat_layer`
    (0: the input; len(hidden): the output layer). phi = {embedding}."""

    def __init__(self, num_tasks: int, in_dim: int, hidden: list[int], out_dim: int,
                 embedding: Literal["learned", "one-hot"], embedding_dim: int, concat_layer: int) -> None:
        super().__init__(num_tasks)
        if not 0 <= concat_layer <= len(hidden):
            raise ValueError(f"concat_layer must be between 0 (the input) and {len(hidden)} (the output layer)")
        self.embeddings = TaskEmbeddings(num_tasks, embedding, embedding_dim)
        self.concat_layer = concat_layer
        self.layers = _linear_layers([in_dim, *hidden, out_dim], {concat_layer: self.embeddings.dim})

    def task_params(self, task: int) -> Params:
        return {"embedding": self.embeddings.table[task]}

    def new_task_params(self, generator: torch.Generator) -> Params:
        return {"embedding": self.embeddings.new()}

    def forward_task(self, phi: Params, x: Tensor) -> Tensor:
        z = phi["embedding"].expand(x.shape[0], -1)  # [B, e]
        h = x
        for j, layer in enumerate(self.layers):
            if j == self.concat_layer:
                h = torch.cat([h, z], dim=1)
            h = layer(h)
            if j < len(self.layers) - 1:
                h = F.relu(h)
        return h


class GatingNet(TaskConditionedNet):
    """A shared MLP whose hidden features are scaled by task gates:
    h_l = relu(W_l h_{l-1}) * 2 sigmoid(G_l z_i). phi = {embedding}."""

    def __init__(self, num_tasks: int, in_dim: int, hidden: list[int], out_dim: int,
                 embedding: Literal["learned", "one-hot"], embedding_dim: int) -> None:
        super().__init__(num_tasks)
        self.embeddings = TaskEmbeddings(num_tasks, embedding, embedding_dim)
        self.layers = _linear_layers([in_dim, *hidden, out_dim], {})
        self.gates = nn.ModuleList(nn.Linear(self.embeddings.dim, width) for width in hidden)

    def task_params(self, task: int) -> Params:
        return {"embedding": self.embeddings.table[task]}

    def new_task_params(self, generator: torch.Generator) -> Params:
        return {"embedding": self.embeddings.new()}

    def forward_task(self, phi: Params, x: Tensor) -> Tensor:
        z = phi["embedding"][None]  # [1, e]
        h = x
        for layer, gate in zip(self.layers[:-1], self.gates, strict=True):
            h = F.relu(layer(h)) * 2 * torch.sigmoid(gate(z))  # [B, H] * [1, H]
        return self.layers[-1](h)


class MultiHeadNet(TaskConditionedNet):
    """Shared bottom, one tower per task (`tower` widths; empty: a linear head per task).
    The MMoE paper's shared-bottom baseline is this with a one-layer tower. phi = {tower.*}."""

    def __init__(self, num_tasks: int, in_dim: int, hidden: list[int], out_dim: int, tower: list[int]) -> None:
        super().__init__(num_tasks)
        self.bottom = StackedMLP(1, in_dim, hidden[:-1], hidden[-1], final_relu=True)
        self.towers = StackedMLP(num_tasks, hidden[-1], tower, out_dim)

    def task_params(self, task: int) -> Params:
        return prefixed("tower", self.towers.slice(task))

    def new_task_params(self, generator: torch.Generator) -> Params:
        return prefixed("tower", self.towers.fresh(generator))

    def forward_task(self, phi: Params, x: Tensor) -> Tensor:
        h = mlp_apply(self.bottom.slice(0), x, final_relu=True)  # [B, H]
        return mlp_apply(unprefixed("tower", phi), h)


class SeparateNets(TaskConditionedNet):
    """A whole network per task, nothing shared: the no-sharing baseline. phi = the network;
    a new task trains a fresh network on its support set alone."""

    def __init__(self, num_tasks: int, in_dim: int, hidden: list[int], out_dim: int) -> None:
        super().__init__(num_tasks)
        self.nets = StackedMLP(num_tasks, in_dim, hidden, out_dim)

    def task_params(self, task: int) -> Params:
        return self.nets.slice(task)

    def new_task_params(self, generator: torch.Generator) -> Params:
        return self.nets.fresh(generator)

    def forward_task(self, phi: Params, x: Tensor) -> Tensor:
        return mlp_apply(phi, x)


class SoftSharingNets(SeparateNets):
    """Separate networks with penalty * sum_i ||theta_i - mean_j theta_j||^2 over all layers
    but the output layer (Duong et al., 2015). A new task starts from the mean network and
    fits its output layer, the mean hidden layers frozen."""

    def __init__(self, num_tasks: int, in_dim: int, hidden: list[int], out_dim: int, penalty: float) -> None:
        super().__init__(num_tasks, in_dim, hidden, out_dim)
        self.strength = penalty

    def new_task_params(self, generator: torch.Generator) -> Params:
        phi = self.nets.mean()
        last = self.nets.n_layers - 1
        fresh = self.nets.fresh(generator)
        for key in (f"layer{last}.weight", f"layer{last}.bias"):
            phi[key] = fresh[key]
        return phi

    def adapt_keys(self, phi: Params) -> list[str]:
        last = self.nets.n_layers - 1
        return [f"layer{last}.weight", f"layer{last}.bias"]

    def penalty(self) -> Tensor:
        total = torch.zeros(())
        for stack in list(self.nets.weights)[:-1] + list(self.nets.biases)[:-1]:
            total = total + (stack - stack.mean(0, keepdim=True)).pow(2).sum()  # stack [T, ...]
        return self.strength * total


class MMoENet(TaskConditionedNet):
    """Multi-gate mixture of experts (Ma et al., 2018): shared experts e_k(x), one softmax gate
    per task g_i(x) = softmax(W_i x + b_i) over them, and a tower per task reading
    sum_k g_ik(x) e_k(x). phi = {gate.weight, gate.bias, tower.*}."""

    def __init__(self, num_tasks: int, in_dim: int, out_dim: int, experts: int, expert_hidden: list[int],
                 tower: list[int]) -> None:
        super().__init__(num_tasks)
        self.experts = StackedMLP(experts, in_dim, expert_hidden[:-1], expert_hidden[-1], final_relu=True)
        self.gate_weight = nn.Parameter(torch.randn(num_tasks, experts, in_dim) * 0.01)  # [T, K, D]
        self.gate_bias = nn.Parameter(torch.zeros(num_tasks, experts))  # [T, K]
        self.towers = StackedMLP(num_tasks, expert_hidden[-1], tower, out_dim)

    def task_params(self, task: int) -> Params:
        return {"gate.weight": self.gate_weight[task], "gate.bias": self.gate_bias[task],
                **prefixed("tower", self.towers.slice(task))}

    def new_task_params(self, generator: torch.Generator) -> Params:
        k, d = self.gate_weight.shape[1:]
        device = self.gate_weight.device
        return {"gate.weight": torch.zeros(k, d, device=device), "gate.bias": torch.zeros(k, device=device),  # uniform
                **prefixed("tower", self.towers.fresh(generator))}

    def gates(self, phi: Params, x: Tensor) -> Tensor:
        """The task's distribution over experts for each input: [B, K], rows sum to 1."""
        return torch.softmax(F.linear(x, phi["gate.weight"], phi["gate.bias"]), dim=1)

    def forward_task(self, phi: Params, x: Tensor) -> Tensor:
        mixed = (self.gates(phi, x)[:, :, None] * self.experts.forward_all(x)).sum(1)  # [B, K, 1] * [B, K, E] -> [B, E]
        return mlp_apply(unprefixed("tower", phi), mixed)
