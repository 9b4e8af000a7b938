"""The recurrent reader of a memory-augmented network (Santoro et al., 2016; CS330 HW1).

An LSTM reads the support set as a sequence of (embedding, label) pairs; its recurrent state
after the last pair is the task's state h_i. A query continues from that state with a zeroed
label, one step, and the top layer's output gives its prediction. Queries are a batch of
independent one-step continuations, so no query sees another.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

Params = dict[str, Tensor]


class MANNReader(nn.Module):
    def __init__(self, embed_dim: int, label_dim: int, out_dim: int, width: int, layers: int) -> None:
        super().__init__()
        self.label_dim = label_dim
        self.lstm = nn.LSTM(embed_dim + label_dim, width, num_layers=layers, batch_first=True)
        self.head = nn.Linear(width, out_dim)

    def summarize(self, e: Tensor, labels: Tensor, n_classes: int | None) -> Params:
        """e: [T, S, D] support embeddings, labels: [T, S, label_dim] -> state of each task."""
        _, (h, c) = self.lstm(torch.cat([e, labels], dim=-1))  # h, c: [layers, T, width]
        return {"mann.h": h.transpose(0, 1), "mann.c": c.transpose(0, 1)}  # [T, layers, width]

    def readout(self, state: Params, e: Tensor) -> Tensor:
        """e: [T, Q, D] query embeddings -> outputs [T, Q, out_dim], each query on its own."""
        t, q, _ = e.shape
        steps = torch.cat([e, e.new_zeros(t, q, self.label_dim)], dim=-1).reshape(t * q, 1, -1)  # [T*Q, 1, D+Y]
        h0 = state["mann.h"].repeat_interleave(q, dim=0).transpose(0, 1).contiguous()  # [layers, T*Q, width]
        c0 = state["mann.c"].repeat_interleave(q, dim=0).transpose(0, 1).contiguous()
        out, _ = self.lstm(steps, (h0, c0))  # [T*Q, 1, width]
        return self.head(out[:, 0]).view(t, q, -1)
