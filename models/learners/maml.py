"""MAML (Finn et al., 2017): theta is an initialisation; phi is theta after k inner steps."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.func import functional_call

from models.episodes import Episode, ProblemSpec
from models.learners.base import AdaptOptions, Learner, Params
from models.learners.inner import inner_loop
from models.nets import build_backbone

MAX_ADAPT_STEPS = 100


@dataclass
class MAMLConfig:
    inner_steps: int = 1  # gradient steps per task in meta-training
    inner_lr: float = 0.01
    meta_lr: float = 1e-3  # Adam on theta
    first_order: bool = False  # drop the second-order terms of the meta-gradient
    adapt_steps: int | None = None  # steps when adapting a new task (default: inner_steps)
    hidden: list[int] = field(default_factory=lambda: [40, 40])  # MLP widths (vector inputs)
    channels: int = 64  # Conv4 width (image inputs)

    def __post_init__(self) -> None:
        if not 0 <= self.inner_steps <= MAX_ADAPT_STEPS:
            raise ValueError(f"inner_steps must be between 0 and {MAX_ADAPT_STEPS}")
        if self.adapt_steps is not None and not 0 <= self.adapt_steps <= MAX_ADAPT_STEPS:
            raise ValueError(f"adapt_steps must be between 0 and {MAX_ADAPT_STEPS}")
        if not 0 < self.inner_lr <= 10:
            raise ValueError("inner_lr must be in (0, 10]")
        if not 0 < self.meta_lr <= 1:
            raise ValueError("meta_lr must be in (0, 1]")
        if not self.hidden or any(h < 1 or h > 4096 for h in self.hidden):
            raise ValueError("hidden must list layer widths between 1 and 4096")
        if not 1 <= self.channels <= 512:
            raise ValueError("channels must be between 1 and 512")


class MAML(Learner):
    algorithm = "maml"
    config_class = MAMLConfig

    def __init__(self, spec: ProblemSpec, config: MAMLConfig) -> None:
        super().__init__(spec, config)
        self.net = build_backbone(spec, config.hidden, config.channels)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.meta_lr)

    def _forward(self, params: Params, x: Tensor) -> Tensor:
        return functional_call(self.net, params, (x,))

    def _task_params(self, n_classes: int | None) -> Params:
        """theta, with the head cut to the task's classes when it has fewer than n_way."""
        params = dict(self.net.named_parameters())
        if n_classes is not None and n_classes < self.spec.n_way:
            params["head.weight"] = params["head.weight"][:n_classes]
            params["head.bias"] = params["head.bias"][:n_classes]
        return params

    def _adapted(self, ep_x: Tensor, ep_y: Tensor, params: Params, steps: int, lr: float, create_graph: bool) -> Params:
        return inner_loop(self._forward, params, ep_x, ep_y, self.loss, steps, lr, create_graph=create_graph)

    def meta_train_step(self, episodes: list[Episode]) -> dict[str, float]:
        cfg = self.config
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict[str, float] = {}
        for ep in episodes:  # a loop over tasks; each backward frees its task's graph
            fast = self._adapted(
                ep.support_x, ep.support_y, self._task_params(None), cfg.inner_steps, cfg.inner_lr,
                create_graph=not cfg.first_order,
            )
            out = self._forward(fast, ep.query_x)
            loss = self.loss(out, ep.query_y)
            (loss / len(episodes)).backward()
            for k, v in {"loss": float(loss.detach()), **self.score(out.detach(), ep.query_y)}.items():
                totals[k] = totals.get(k, 0.0) + v / len(episodes)
        self.optimizer.step()
        return totals

    def adapt(self, support_x: Tensor, support_y: Tensor, options: AdaptOptions | None = None) -> Params:
        self.check_support(support_x, support_y)
        options = options or AdaptOptions()
        steps = options.inner_steps
        if steps is None:
            steps = self.config.adapt_steps if self.config.adapt_steps is not None else self.config.inner_steps
        if not 0 <= steps <= MAX_ADAPT_STEPS:
            raise ValueError(f"inner_steps must be between 0 and {MAX_ADAPT_STEPS}")
        lr = options.inner_lr if options.inner_lr is not None else self.config.inner_lr
        n_classes = int(support_y.max()) + 1 if self.spec.output == "classification" else None
        with torch.no_grad():
            theta = {k: v.detach() for k, v in self._task_params(n_classes).items()}
            phi = self._adapted(support_x, support_y, theta, steps, lr, create_graph=False)
        return {k: v.detach().contiguous() for k, v in phi.items()}

    def predict(self, phi: Params, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self._forward(phi, x)

    def state(self) -> Params:
        return {k: v.detach().clone().contiguous() for k, v in self.net.state_dict().items()}

    def load_state(self, tensors: Params) -> None:
        self.net.load_state_dict(tensors, strict=True)
