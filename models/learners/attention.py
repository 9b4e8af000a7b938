"""An attention reader in the manner of SNAIL and the Set Transformer (Lee et al., 2019).

Each support pair (embedding, label) becomes a token; self-attention blocks without
positions encode the set, so the order of the support set does not matter. The task's state
h_i has a fixed size: for classification the mean encoded token of each class ([n, width]);
for regression a few learned seeds that attend to the tokens ([seeds, width], the Set
Transformer's pooling). A query is a token with a zeroed label that attends to h_i alone, so
queries never see one another. For classification the logit of slot c is the query's
agreement with the input embedding of label c (tied, as language models tie word embeddings);
for regression a linear head reads the targets. The decoder's keys start equal to its queries,
so at initialisation a query already attends most to the classes that look like it (meant to
shorten the plateau at chance that black-box learners start on).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Params = dict[str, Tensor]
REGRESSION_SEEDS = 8


class AttentionBlock(nn.Module):
    """Pre-norm transformer block: x attends to a context, then a two-layer MLP; both residual."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.norm_x, self.norm_context, self.norm_mlp = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.query = nn.Linear(width, width)
        self.key_value = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, x: Tensor, context: Tensor) -> Tensor:  # x: [T, N, W], context: [T, M, W]
        q = self._split(self.query(self.norm_x(x)))  # [T, H, N, W/H]
        k, v = (self._split(z) for z in self.key_value(self.norm_context(context)).chunk(2, dim=-1))  # [T, H, M, W/H]
        attended = F.scaled_dot_product_attention(q, k, v)  # [T, H, N, W/H]
        x = x + self.out(attended.transpose(1, 2).flatten(2))  # [T, N, W]
        return x + self.mlp(self.norm_mlp(x))

    def _split(self, z: Tensor) -> Tensor:
        return z.unflatten(-1, (self.heads, -1)).transpose(1, 2)


class AttentionReader(nn.Module):
    def __init__(
        self, embed_dim: int, label_dim: int, out_dim: int, width: int, layers: int, heads: int, tied_labels: bool
    ) -> None:
        super().__init__()
        self.label_dim = label_dim
        self.token = nn.Linear(embed_dim + label_dim, width)
        self.encoder = nn.ModuleList(AttentionBlock(width, heads) for _ in range(layers))
        self.seeds = nn.Parameter(torch.randn(REGRESSION_SEEDS, width) / width**0.5)
        self.pool = AttentionBlock(width, heads)
        self.decoder = nn.ModuleList(AttentionBlock(width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, out_dim)
        self.tied = tied_labels
        with torch.no_grad():  # queries start out attending to the summaries that resemble them
            for block in self.decoder:
                block.key_value.weight[:width].copy_(block.query.weight)
                block.key_value.bias[:width].copy_(block.query.bias)

    def summarize(self, e: Tensor, labels: Tensor, n_classes: int | None) -> Params:
        """e: [T, S, D], labels: [T, S, label_dim] -> h_i per task, [T, n or seeds, width]."""
        z = self.token(torch.cat([e, labels], dim=-1))  # [T, S, W]
        for block in self.encoder:
            z = block(z, z)
        if n_classes is None:  # regression: learned seeds pool the set
            return {"attention.summary": self.pool(self.seeds.expand(len(z), -1, -1), z)}
        members = labels[..., :n_classes]  # [T, S, n] one-hot
        counts = members.sum(dim=1).clamp(min=1).unsqueeze(-1)  # [T, n, 1]
        return {"attention.summary": members.transpose(1, 2) @ z / counts}  # [T, n, W]

    def readout(self, state: Params, e: Tensor) -> Tensor:
        """e: [T, Q, D] -> outputs [T, Q, out_dim]; each query attends only to h_i."""
        q = self.token(torch.cat([e, e.new_zeros(*e.shape[:2], self.label_dim)], dim=-1))  # [T, Q, W]
        for block in self.decoder:
            q = block(q, state["attention.summary"])
        if self.tied:  # logit of slot c: the query's agreement with the input embedding of label c
            label_embedding = self.token.weight[:, -self.label_dim :]  # [W, label_dim]
            return self.norm(q) @ label_embedding + self.head.bias
        return self.head(self.norm(q))
