"""Black-box meta-learning: a network reads the support set and writes the task's state.

phi_i = f_theta(D_i^tr) is a small summary h_i (the LSTM state of `mann`, the class summaries
of `attention`) and a prediction is g(x; h_i, theta). Inputs are embedded first, by the MLP or
the Conv4 of models/nets.py; labels enter as one-hot vectors over n_way slots (targets for
regression), so a task with n < n_way classes uses the first n slots and gets n logits back.
`attention` with its default `attention_readout` "summaries" enters a label as its class's
mean embedding and scores a query against each class summary instead (models/learners/attention.py),
so it reads tasks of any number of classes up to MAX_CLASSES, whatever way it trained at.

Image embeddings normalise with the support set's statistics (MetaBN; Bronskill et al., 2020):
on the support set this is exactly Conv4.embed() with its batch statistics, and the statistics
are stored in phi, so queries are normalised by them and never by one another.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from models.config import PREFIX, Config, ConfigError, Float
from models.episodes import Episode, ProblemSpec
from models.learners.attention import AttentionReader
from models.learners.base import (
    MAX_CLASSES,
    AdaptOptions,
    Channels,
    Learner,
    MetaRate,
    Params,
    Width,
    Widths,
    same_shape_groups,
    stack_states,
)
from models.learners.mann import MANNReader
from models.nets import SupportNormConv4, VectorEmbedding  # noqa: F401 - where tests and callers found them


class BlackBoxConfig(Config):
    architecture: Literal["mann", "attention"] = "mann"
    meta_lr: MetaRate = 1e-3  # Adam on theta
    hidden: Widths = [64, 64]  # MLP embedding widths (vector inputs)
    channels: Channels = 64  # Conv4 width (image inputs); the embedding has this size
    width: Width = 128  # LSTM hidden size (mann) or token width (attention)
    layers: int = Field(1, ge=1, le=16)  # LSTM layers (mann) or attention blocks in the encoder and the decoder
    heads: int = Field(4, ge=1, le=64)  # attention heads (attention); they divide width
    # attention, classification: "summaries" scores a query against each class summary (any number of classes up to
    # 1,000, whatever the training way); "label_slots" against a learned embedding per label (at most n_way classes;
    # attention models stored before this key). mann always has label slots.
    attention_readout: Literal["summaries", "label_slots"] = "summaries"
    fewer_ways_fraction: Float = Field(0.5, ge=0, le=1)  # meta-batches on 2..n_way-1 classes: serves small tasks, and
    # easy tasks get black-box learners off their initial plateau at chance sooner
    max_grad_norm: Float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> BlackBoxConfig:
        if self.architecture == "attention" and self.width % self.heads:
            raise ConfigError(f"heads must divide width ({self.width}), got {self.heads}", PREFIX + "heads")
        return self


class BlackBoxNet(nn.Module):
    """All of theta: the embedding and the reader."""

    def __init__(self, spec: ProblemSpec, config: BlackBoxConfig) -> None:
        super().__init__()
        self.embedding = spec.modality.support_encoder(config.hidden, config.channels)
        slots = spec.n_way if spec.output == "classification" else spec.output_dim
        dim = self.embedding.embedding_dim
        self.reader: MANNReader | AttentionReader
        if config.architecture == "mann":
            self.reader = MANNReader(dim, slots, slots, config.width, config.layers)
        else:
            readout = config.attention_readout if spec.output == "classification" else "head"
            self.reader = AttentionReader(dim, slots, slots, config.width, config.layers, config.heads, readout)


class BlackBox(Learner):
    algorithm = "blackbox"
    config_class = BlackBoxConfig

    def __init__(self, spec: ProblemSpec, config: BlackBoxConfig) -> None:
        super().__init__(spec, config)
        self.classification = spec.output == "classification"
        # labels are read through their class's summary, not a slot of their own: any number of classes
        self.any_way = self.classification and config.architecture == "attention" and config.attention_readout == "summaries"
        self.net = BlackBoxNet(spec, config)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.meta_lr)

    # The two halves of the learner, batched over tasks: f_theta (support -> phi) and g.

    def _summarize(self, support_x: Tensor, support_y: Tensor, n_classes: int | None) -> Params:
        """support_x: [T, S, *input_shape], support_y: [T, S] or [T, S, dim] -> phi, [T, ...] each."""
        e, stats = self.net.embedding(support_x)  # [T, S, D]
        if self.classification:
            labels = F.one_hot(support_y, n_classes if self.any_way else self.spec.n_way).float()
        else:
            labels = support_y
        return {**stats, **self.net.reader.summarize(e, labels, n_classes)}

    def _readout(self, phi: Params, query_x: Tensor, n_classes: int | None) -> Tensor:
        """query_x: [T, Q, *input_shape] -> logits [T, Q, n] or outputs [T, Q, dim]."""
        e, _ = self.net.embedding(query_x, phi)
        out = self.net.reader.readout(phi, e)
        return out[..., :n_classes] if n_classes is not None else out

    def meta_train_step(self, episodes: list[Episode]) -> dict[str, float]:
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        n_classes = self._training_ways()
        prepared = [self._training_episode(ep, n_classes) for ep in episodes]
        groups: dict[tuple[torch.Size, ...], list[Episode]] = {}
        for ep in prepared:  # tasks of one shape are stacked and read as one batch
            groups.setdefault((ep.support_x.shape, ep.query_x.shape, ep.support_y.shape), []).append(ep)
        totals: dict[str, float] = {}
        for group in groups.values():
            sx, sy = torch.stack([ep.support_x for ep in group]), torch.stack([ep.support_y for ep in group])
            qx, qy = torch.stack([ep.query_x for ep in group]), torch.stack([ep.query_y for ep in group])
            out = self._readout(self._summarize(sx, sy, n_classes), qx, n_classes)  # [T, Q, n]
            out, qy = out.flatten(0, 1), qy.flatten(0, 1)
            loss = self.loss(out, qy)
            (loss * len(group) / len(episodes)).backward()
            for k, v in {"loss": float(loss.detach()), **self.score(out.detach(), qy)}.items():
                totals[k] = totals.get(k, 0.0) + v * len(group) / len(episodes)
        nn.utils.clip_grad_norm_(self.net.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        return totals

    def _training_ways(self) -> int | None:
        """n_way, or for a fraction of meta-batches fewer, so that smaller tasks are served well."""
        if not self.classification:
            return None
        n_way = self.spec.n_way
        if n_way > 2 and float(torch.rand(())) < self.config.fewer_ways_fraction:
            return int(torch.randint(2, n_way, ()))
        return n_way

    def _training_episode(self, ep: Episode, n_classes: int | None) -> Episode:
        """The episode cut to its first n classes, its support set in a random order."""
        sx, sy, qx, qy = ep.support_x, ep.support_y, ep.query_x, ep.query_y
        if n_classes is not None and n_classes < self.spec.n_way:
            keep_s, keep_q = sy < n_classes, qy < n_classes
            sx, sy, qx, qy = sx[keep_s], sy[keep_s], qx[keep_q], qy[keep_q]
        order = torch.randperm(len(sx))
        return Episode(sx[order], sy[order], qx, qy)

    @property
    def max_classes(self) -> int:
        return MAX_CLASSES if self.any_way else self.spec.n_way

    @classmethod
    def stored_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Attention models stored before `attention_readout` existed read out through label slots."""
        if config.get("architecture") == "attention" and "attention_readout" not in config:
            return {**config, "attention_readout": "label_slots"}
        return config

    def adapt(self, support_x: Tensor, support_y: Tensor, options: AdaptOptions | None = None) -> Params:
        """h_i from one read of the support set; inner_steps and inner_lr do not apply."""
        self.check_support(support_x, support_y)
        n_classes = int(support_y.max()) + 1 if self.classification else None
        self.net.eval()
        with torch.no_grad():
            phi = self._summarize(support_x[None], support_y[None], n_classes)
        state = {k: v[0].contiguous() for k, v in phi.items()}
        if n_classes is not None:
            state["n_classes"] = torch.tensor([n_classes], dtype=torch.int64)
        return state

    def predict(self, phi: Params, x: Tensor) -> Tensor:
        if x.shape[1:] != torch.Size(self.spec.input_shape):
            raise ValueError(f"inputs have shape {tuple(x.shape[1:])}, the model takes {self.spec.input_shape}")
        n_classes = int(phi["n_classes"][0]) if self.classification else None
        batched = {k: v[None] for k, v in phi.items() if k != "n_classes"}
        self.net.eval()
        with torch.no_grad():
            return self._readout(batched, x[None], n_classes)[0]

    def predict_many(self, requests: list[tuple[Params, Tensor]]) -> list[Tensor]:
        """Stacked summaries: one readout over the tasks of each group of same-shaped requests with
        the same number of classes (the readout is batched over tasks already)."""
        outputs: list[Tensor | None] = [None] * len(requests)
        self.net.eval()
        with torch.no_grad():
            for group in same_shape_groups(requests):
                first_phi, first_x = requests[group[0]]
                if len(group) == 1 or first_x.shape[1:] != torch.Size(self.spec.input_shape):
                    for i in group:
                        outputs[i] = self.predict(*requests[i])
                    continue
                n_groups: dict[int | None, list[int]] = {}
                for i in group:
                    n = int(requests[i][0]["n_classes"][0]) if self.classification else None
                    n_groups.setdefault(n, []).append(i)
                for n_classes, members in n_groups.items():
                    phis = stack_states([{k: v for k, v in requests[i][0].items() if k != "n_classes"} for i in members])
                    xs = torch.stack([requests[i][1] for i in members])
                    outs = self._readout(phis, xs, n_classes)
                    for j, i in enumerate(members):
                        outputs[i] = outs[j]
        return outputs  # type: ignore[return-value]

    def state(self) -> Params:
        return {k: v.detach().clone().contiguous() for k, v in self.net.state_dict().items()}

    def load_state(self, tensors: Params) -> None:
        self.net.load_state_dict(tensors, strict=True)

