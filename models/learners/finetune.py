"""The fine-tuning baseline: supervised pretraining on the union of training classes, then a
fresh head fitted to each task's support set with the backbone frozen.

Pretraining reads `supervised_batch` of the task family (global class ids; see
models.episodes.SupervisedBatch), `batch_size` examples per step; meta_batch_size is unused.
A task's phi is its head. For regression (the MAML paper's "pretrained" sinusoid baseline)
the head starts from the pretrained one, and `scope` "all" fine-tunes every weight instead
(phi is then the whole network), as that paper does.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.func import functional_call

from models.config import Config
from models.episodes import ProblemSpec, SupervisedBatch, TaskFamily
from models.learners.anil import HEAD_KEYS, EmbeddingView, head_forward
from models.learners.base import (
    MAX_ADAPT_STEPS,
    MAX_CLASSES,
    AdaptOptions,
    AdaptSteps,
    Channels,
    InnerRate,
    Learner,
    MetaRate,
    Params,
    Widths,
)
from models.learners.features import CENTER, NORMALIZED_SCALE, adapted_features, batched_query_features, query_features
from models.learners.inner import inner_loop
from models.nets import build_backbone


class FinetuneConfig(Config):
    meta_lr: MetaRate = 1e-3  # Adam in pretraining
    batch_size: int = Field(128, ge=1, le=100_000)  # examples per pretraining step
    inner_steps: AdaptSteps = 50  # gradient steps fitting a task's head
    inner_lr: InnerRate = 0.1
    scope: Literal["head", "all"] = "head"
    hidden: Widths = [40, 40]  # MLP widths (vector inputs)
    channels: Channels = 64  # Conv4 width (image inputs)


class Finetune(Learner):
    algorithm = "finetune"
    config_class = FinetuneConfig
    zero_steps_is_unadapted = True  # regression: the pretrained head; classification: a zero head

    def __init__(self, spec: ProblemSpec, config: FinetuneConfig) -> None:
        super().__init__(spec, config)
        self.net = build_backbone(spec, config.hidden, config.channels, running_stats=True)
        if spec.output == "classification":
            self.net.head = nn.Identity()  # the pretraining head is sized by the first batch
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.meta_lr)

    @property
    def _classifies(self) -> bool:
        return self.spec.output == "classification"

    def _set_pretrain_head(self, n_classes: int) -> None:
        head = self.net.head
        if isinstance(head, nn.Linear) and head.out_features == n_classes:
            return
        if isinstance(head, nn.Linear):
            raise ValueError(f"pretraining head has {head.out_features} classes, the batch {n_classes}")
        device = next(self.net.parameters()).device
        self.net.head = nn.Linear(self.net.embedding_dim, n_classes).to(device)  # type: ignore[arg-type]
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.config.meta_lr)

    def training_batch(self, tasks: TaskFamily, size: int, generator: torch.Generator) -> SupervisedBatch:
        supervised = getattr(tasks, "supervised_batch", None)
        if supervised is None:
            raise ValueError(f"finetune pretrains on global classes; {type(tasks).__name__} has no supervised_batch")
        return supervised(self.config.batch_size, generator)

    def meta_train_step(self, batch: SupervisedBatch) -> dict[str, float]:  # type: ignore[override]
        if self._classifies:
            self._set_pretrain_head(batch.n_classes)
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        out = self.net(batch.x)  # [B, n_classes] or [B, output_dim]
        loss = self.loss(out, batch.y)
        loss.backward()
        self.optimizer.step()
        return {"loss": float(loss.detach()), **self.score(out.detach(), batch.y)}

    def adapt(self, support_x: Tensor, support_y: Tensor, options: AdaptOptions | None = None) -> Params:
        self.check_support(support_x, support_y)
        options = options or AdaptOptions()
        steps = self.config.inner_steps if options.inner_steps is None else options.inner_steps
        if not 0 <= steps <= MAX_ADAPT_STEPS:
            raise ValueError(f"inner_steps must be between 0 and {MAX_ADAPT_STEPS}")
        lr = self.config.inner_lr if options.inner_lr is None else options.inner_lr
        self.net.eval()
        with torch.no_grad():
            head = self._initial_head(support_y)
            if self.config.scope == "all":
                if options.test_time_augmentation or options.feature_normalization:
                    raise ValueError("test_time_augmentation and feature_normalization need scope 'head' (a frozen body)")
                params = {k: v.detach() for k, v in self.net.named_parameters() if k not in HEAD_KEYS}
                phi = inner_loop(self._forward, {**params, **head}, support_x, support_y, self.loss, steps, lr, create_graph=False)
            else:  # [S, D], computed once: the body is frozen
                features, extra = adapted_features(self.net.embed, support_x, options)
                if CENTER in extra and self._classifies:
                    features = features * NORMALIZED_SCALE  # unit-length features would fit the head slowly
                phi = inner_loop(head_forward, head, features, support_y, self.loss, steps, lr, create_graph=False)
                phi = {**phi, **extra}
        return {k: v.detach().contiguous() for k, v in phi.items()}

    def _initial_head(self, support_y: Tensor) -> Params:
        if not self._classifies:
            return {k: v.detach().clone() for k, v in self.net.head.named_parameters(prefix="head")}
        n = int(support_y.max()) + 1
        dim = self.net.embedding_dim
        device = support_y.device
        return {"head.weight": torch.zeros(n, dim, device=device), "head.bias": torch.zeros(n, device=device)}  # fresh

    def _forward(self, params: Params, x: Tensor) -> Tensor:
        body = {f"net.{k}": v for k, v in params.items() if k not in HEAD_KEYS}
        return head_forward(params, functional_call(EmbeddingView(self.net), body, (x,)))

    def predict(self, phi: Params, x: Tensor) -> Tensor:
        self.net.eval()
        with torch.no_grad():
            if self.config.scope == "all":
                return self._forward(phi, x)
            features = query_features(self.net.embed, phi, x)
            return head_forward(phi, features * NORMALIZED_SCALE if CENTER in phi and self._classifies else features)

    @property
    def max_classes(self) -> int:
        """Any number of classes up to MAX_CLASSES: a task's classes come from its support set."""
        return MAX_CLASSES if self.spec.output == "classification" else 0

    def predict_many(self, requests: list[tuple[Params, Tensor]]) -> list[Tensor]:
        """Head scope: one pass of the frozen body over every request's inputs, then each task's head."""
        if self.config.scope == "all":
            return super().predict_many(requests)
        self.net.eval()
        with torch.no_grad():
            features = batched_query_features(self.net.embed, requests)
            return [head_forward(phi, f * NORMALIZED_SCALE if CENTER in phi and self._classifies else f)
                    for f, (phi, _) in zip(features, requests, strict=True)]

    def state(self) -> Params:
        return {k: v.detach().clone().contiguous() for k, v in self.net.state_dict().items()}

    def load_state(self, tensors: Params) -> None:
        if self._classifies and "head.weight" in tensors:
            self._set_pretrain_head(tensors["head.weight"].shape[0])
        self.net.load_state_dict(tensors, strict=True)
