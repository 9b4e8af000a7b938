"""An attention reader in the manner of SNAIL and the Set Transformer (Lee et al., 2019).

Each support pair (embedding, label) becomes a token; self-attention blocks without
positions encode the set, so the order of the support set does not matter. The task's state
h_i has a fixed size: for classification the mean encoded token of each class ([n, width]);
for regression a few learned seeds that attend to the tokens ([seeds, width], the Set
Transformer's pooling). A query is a token that attends to h_i alone, so queries never see
one another. For regression its label is zeroed and a linear head reads the targets. The decoder's
keys start equal to its queries, so at initialisation a query already attends most to the
classes that look like it (meant to shorten the plateau at chance that black-box learners
start on).

Classification reads out in one of two ways (`Readout`):
- "summaries" (the default): a support example's label enters as the mean embedding of its
  class (its prototype; a class's examples share it, so the encoder knows which belong
  together), a query's as its own embedding (a class of one), and the logit of class c is
  minus the scaled squared distance between the decoded query and class c's summary. The
  blocks' output layers start at zero, so an untrained reader is a ProtoNet on the token map
  and meta-training learns what attention adds. Nothing is indexed by a label's number: a
  model trained 5-way reads a task of any number of classes, and relabelling the classes
  permutes the logits.
- "label_slots": the label enters one-hot over n_way slots, a query's label as zeros, and the
  logit of slot c is the query's agreement with the input embedding of label c (tied, as
  language models tie word embeddings); a task has at most n_way classes. Models stored
  before "summaries" existed read out this way.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Params = dict[str, Tensor]
Readout = Literal["summaries", "label_slots", "head"]  # "head": regression, a linear head reads the targets
REGRESSION_SEEDS = 8
INITIAL_SCALE = 1.0  # the distance logits' scale at initialisation (learned)


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
        self, embed_dim: int, label_dim: int, out_dim: int, width: int, layers: int, heads: int, readout: Readout
    ) -> None:
        super().__init__()
        self.readout_kind = readout
        self.label_dim = embed_dim if readout == "summaries" else label_dim  # a class's mean embedding, or one-hot
        self.token = nn.Linear(embed_dim + self.label_dim, width)
        self.encoder = nn.ModuleList(AttentionBlock(width, heads) for _ in range(layers))
        self.seeds = nn.Parameter(torch.randn(REGRESSION_SEEDS, width) / width**0.5)
        self.pool = AttentionBlock(width, heads)
        self.decoder = nn.ModuleList(AttentionBlock(width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        if readout == "summaries":
            self.log_scale = nn.Parameter(torch.tensor(INITIAL_SCALE).log())
            with torch.no_grad():  # every block starts as the identity: a ProtoNet on the tokens
                for block in [*self.encoder, *self.decoder]:
                    for layer in (block.out, block.mlp[-1]):
                        layer.weight.zero_()
                        layer.bias.zero_()
        else:
            self.head = nn.Linear(width, out_dim)
        with torch.no_grad():  # queries start out attending to the summaries that resemble them
            for block in self.decoder:
                block.key_value.weight[:width].copy_(block.query.weight)
                block.key_value.bias[:width].copy_(block.query.bias)

    def summarize(self, e: Tensor, labels: Tensor, n_classes: int | None) -> Params:
        """e: [T, S, D], labels: [T, S, n_way or n] one-hot, or [T, S, dim] targets -> h_i per task,
        [T, n or seeds, width]."""
        if n_classes is None:  # regression: the targets enter, and learned seeds pool the set
            z = self._encode(self.token(torch.cat([e, labels], dim=-1)))
            return {"attention.summary": self.pool(self.seeds.expand(len(z), -1, -1), z)}
        members = labels[..., :n_classes]  # [T, S, n] one-hot
        counts = members.sum(dim=1).clamp(min=1).unsqueeze(-1)  # [T, n, 1]
        if self.readout_kind == "summaries":  # a label enters as its class's mean embedding
            labels = members @ (members.transpose(1, 2) @ e / counts)  # [T, S, D]
        z = self._encode(self.token(torch.cat([e, labels], dim=-1)))  # [T, S, W]
        return {"attention.summary": members.transpose(1, 2) @ z / counts}  # [T, n, W]

    def _encode(self, z: Tensor) -> Tensor:
        for block in self.encoder:
            z = block(z, z)
        return z

    def readout(self, state: Params, e: Tensor) -> Tensor:
        """e: [T, Q, D] -> outputs [T, Q, out_dim]; each query attends only to h_i."""
        # a query's label: zeros, or for "summaries" its own embedding, as a class of one would have
        label = e if self.readout_kind == "summaries" else e.new_zeros(*e.shape[:2], self.label_dim)
        q = self.token(torch.cat([e, label], dim=-1))  # [T, Q, W]
        for block in self.decoder:
            q = block(q, state["attention.summary"])
        if self.readout_kind == "summaries":  # logit of class c: minus the scaled squared distance to summary c
            # pairwise differences, not cdist's matrix product: a query's logits do not depend on its batch
            distance = torch.cdist(q, state["attention.summary"], compute_mode="donot_use_mm_for_euclid_dist")
            return -self.log_scale.exp() * distance.square()
        if self.readout_kind == "label_slots":  # logit of slot c: the query's agreement with the embedding of label c
            label_embedding = self.token.weight[:, -self.label_dim :]  # [W, label_dim]
            return self.norm(q) @ label_embedding + self.head.bias
        return self.head(self.norm(q))
