"""MAML (Finn et al., 2017): theta is an initialisation; phi is theta after k inner steps.

Second-order by default (the graph runs through every inner step), first-order on request
(`first_order`, or the `fomaml` algorithm). Batch normalisation uses the statistics of the batch
it sees in meta-training and in the inner loop, as the MAML paper trains; an adapted task stores
the statistics of its support set (under its adapted weights) in phi and normalises every
prediction with them, so an input's answer never depends on the rest of its request.

Subclasses change one piece each: Meta-SGD the inner learning rates (learned), ANIL which
parameters the inner loop moves (the head). The inner loop itself is models.learners.inner.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor
from torch.func import functional_call

from models import nets
from models.config import Config
from models.direct_grad import (
    applies,
    conv4_predict,
    conv4_predicts,
    conv4_support_pass,
    direct_gradients,
    fold_batch_norms,
    has_statistics,
    is_direct_conv4,
)
from models.episodes import Episode, ProblemSpec
from models.learners.base import (
    MAX_ADAPT_STEPS,
    AdaptOptions,
    AdaptRequest,
    AdaptSteps,
    Channels,
    InnerRate,
    Learner,
    MetaRate,
    Params,
    Widths,
    check_support_outputs,
    same_shape_groups,
    stack_states,
)
from models.learners.inner import inner_loop
from models.nets import Conv4, build_backbone, channels_last, support_statistics
from models.task_threads import map_in_threads, split, task_threads
from models.vectorized import stack_episodes, vmap_query_outputs, vmap_tasks

InnerLR = float | Params


class MAMLConfig(Config):
    inner_steps: AdaptSteps = 1  # gradient steps per task in meta-training
    inner_lr: InnerRate = 0.01
    meta_lr: MetaRate = 1e-3  # Adam on theta
    first_order: bool = False  # drop the second-order terms of the meta-gradient
    adapt_steps: AdaptSteps | None = None  # steps when adapting a new task (default: inner_steps)
    hidden: Widths = [40, 40]  # MLP widths (vector inputs)
    channels: Channels = 64  # Conv4 width (image inputs)
    # How a meta-batch runs (the same gradient, to float rounding): "loop", one task at a time;
    # "threads", on the CPU with more than one torch thread the tasks split across that many
    # threads, one task at a time on each at one intra-op thread (models.task_threads: a small
    # support set's kernels keep one core busy, not two), elsewhere the loop; "vmap", one vmap
    # over the tasks. On the CPU vmap is the slowest (benchmarks/meta_batch_modes.py); it may win
    # on a GPU.
    meta_batch_mode: Literal["loop", "threads", "vmap"] = "threads"


class MAML(Learner):
    algorithm = "maml"
    config_class = MAMLConfig
    zero_steps_is_unadapted = True
    checks_support_outputs = True  # the support pass that records the batch-norm statistics

    def __init__(self, spec: ProblemSpec, config: MAMLConfig) -> None:
        super().__init__(spec, config)
        self.net = build_backbone(spec, config.hidden, config.channels)
        self.optimizer = torch.optim.Adam(self.meta_parameters(), lr=config.meta_lr)

    # The pieces subclasses replace.

    @property
    def first_order(self) -> bool:
        return bool(self.config.first_order)

    def meta_parameters(self) -> list[Tensor]:
        """Everything the outer loop updates."""
        return list(self.net.parameters())

    def inner_lr(self, theta: Params, scale: float = 1.0) -> InnerLR:
        """The inner learning rate: one number (MAML), or one tensor per adapted parameter."""
        return self.config.inner_lr * scale

    def adapt_from(self, theta: Params, x: Tensor, y: Tensor, steps: int, lr: InnerLR, create_graph: bool) -> Params:
        """phi from theta and a support set: every parameter after `steps` inner steps. Serving a
        classifier on a Conv4 takes the step gradients without autograd (models.direct_grad)."""
        gradients = direct_gradients(self.net, x) if self._direct and not create_graph else None
        if gradients is not None:  # the layout of the convolutions' inputs and of their weight gradients
            theta = {k: channels_last(v) if v.dim() == 4 else v for k, v in theta.items()}
        return inner_loop(self._forward, theta, x, y, self.loss, steps, lr, create_graph=create_graph, gradients=gradients)

    def predict_with(self, theta: Params, phi: Params, x: Tensor) -> Tensor:
        return self._forward(phi, x)

    # Shared by the MAML family.

    @property
    def _direct(self) -> bool:
        """Whether serving may take the direct path: classification (its loss is cross-entropy)."""
        return self.spec.output == "classification"

    def _forward(self, params: Params, x: Tensor) -> Tensor:
        return functional_call(self.net, params, (x,))

    def _task_params(self, n_classes: int | None) -> Params:
        """theta, with the head cut to the task's classes when it has fewer than n_way."""
        params = dict(self.net.named_parameters())
        return cut_head(params, n_classes, self.spec.n_way)

    def meta_train_step(self, episodes: list[Episode]) -> dict[str, float]:
        cfg = self.config
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        theta = self._task_params(None)

        def query_outputs(sx: Tensor, sy: Tensor, qx: Tensor) -> Tensor:
            return self._query_outputs(theta, sx, sy, qx)

        totals: dict[str, float] = {}
        threads = task_threads(len(episodes), next(iter(theta.values())).device) if cfg.meta_batch_mode == "threads" else 1
        if cfg.meta_batch_mode == "vmap":
            batch = stack_episodes(episodes)
            outs = vmap_query_outputs(query_outputs, batch)  # [T, n_query, out]
            losses = torch.func.vmap(self.loss)(outs, batch.query_y)  # [T]
            losses.mean().backward()
            for out, y, loss in zip(outs.detach(), batch.query_y, losses.detach(), strict=True):
                _accumulate(totals, {"loss": float(loss), **self.score(out, y)}, len(episodes))
        elif threads > 1:
            for metrics in self._meta_batch_in_threads(theta, episodes, threads):
                _accumulate(totals, metrics, len(episodes))
        else:
            for ep in episodes:  # a loop over tasks; each backward frees its task's graph
                out = query_outputs(ep.support_x, ep.support_y, ep.query_x)
                loss = self.loss(out, ep.query_y)
                (loss / len(episodes)).backward()
                _accumulate(totals, {"loss": float(loss.detach()), **self.score(out.detach(), ep.query_y)}, len(episodes))
        self.optimizer.step()
        return totals

    def _query_outputs(self, theta: Params, sx: Tensor, sy: Tensor, qx: Tensor) -> Tensor:
        """A task's query outputs under phi adapted from theta on its support set, in the graph
        from theta (second order) or from phi (first order)."""
        lr = self.inner_lr(theta)  # per task: each task's backward frees its graph
        phi = self.adapt_from(theta, sx, sy, self.config.inner_steps, lr, create_graph=not self.first_order)
        return self.predict_with(theta, phi, qx)

    def _meta_batch_in_threads(self, theta: Params, episodes: list[Episode], threads: int) -> list[dict[str, float]]:
        """The meta-gradient of a meta-batch into the meta-parameters' .grad, its tasks split in
        order over `threads` threads (models.task_threads); each task's metrics, in task order.

        functional_call swaps a module's parameters while it runs, so each thread runs its own copy
        of the network's modules (made here, before any thread starts; the tensors are the net's)
        with theta; its partial sum of the task gradients comes back, and the sums are added in
        thread order: the same result every run."""
        params = self.meta_parameters()
        n = len(episodes)
        parts = split(n, threads)
        shared = {id(t): t for t in (*self.net.parameters(), *self.net.buffers())}  # modules copied, tensors shared
        copies = [copy.copy(self) for _ in parts]
        for learner in copies:
            learner.net = copy.deepcopy(self.net, memo=dict(shared))

        def run(part: int) -> tuple[list[Tensor | None], list[dict[str, float]]]:
            learner = copies[part]
            total: list[Tensor | None] = [None] * len(params)
            metrics: list[dict[str, float]] = []
            for i in parts[part]:
                ep = episodes[i]
                out = learner._query_outputs(theta, ep.support_x, ep.support_y, ep.query_x)
                loss = self.loss(out, ep.query_y)
                grads = torch.autograd.grad(loss / n, params, allow_unused=True)
                total = [_add(t, g) for t, g in zip(total, grads, strict=True)]
                metrics.append({"loss": float(loss.detach()), **self.score(out.detach(), ep.query_y)})
            return total, metrics

        results = map_in_threads(run, range(len(parts)))
        grads: list[Tensor | None] = [None] * len(params)
        for partial, _ in results:
            grads = [_add(t, g) for t, g in zip(grads, partial, strict=True)]
        for p, g in zip(params, grads, strict=True):
            if g is not None:
                p.grad = g if p.grad is None else p.grad + g
        return [m for _, metrics in results for m in metrics]

    def adapt(self, support_x: Tensor, support_y: Tensor, options: AdaptOptions | None = None) -> Params:
        self.check_support(support_x, support_y)
        plan = self._adaptation(support_y, options)
        self.net.train()  # batch statistics, as in meta-training
        with torch.no_grad():  # serving builds no graph through the inner loop
            phi, outputs = self._serving_adapt(plan)(support_x, support_y)
        check_support_outputs(outputs, support_y)
        return {k: v.detach().contiguous() for k, v in phi.items()}

    def adapt_many(self, requests: list[AdaptRequest], vectorize: bool | None = None) -> list[Params]:
        """With `vectorize`, one vmap over the stacked support sets of each group of requests with
        the same shapes, steps, learning rate and classes (the inner loop's torch.func path, as a
        vmap meta-batch runs); without it, one adapt per request. Default: vectorize on CUDA only.
        On CPU the loop is faster: Conv4-64, 100 tasks of 5-way 1-shot, 5 steps, 1 thread, the
        vmap's grouped convolutions took 2.4 to 2.9 times the loop's time in the runs of
        benchmarks/adaptation_burst.py (116 against 48 ms a task, then 114 against 39)."""
        if vectorize is None:
            vectorize = self.device.type == "cuda"
        if not vectorize or len(requests) < 2:
            return super().adapt_many(requests)
        plans = []
        for r in requests:
            self.check_support(r.support_x, r.support_y)
            plans.append(self._adaptation(r.support_y, r.options))
        groups: dict[tuple[object, ...], list[int]] = {}
        for i, (r, plan) in enumerate(zip(requests, plans, strict=True)):
            key = (tuple(r.support_x.shape), tuple(r.support_y.shape), r.support_x.dtype, r.support_y.dtype, plan)
            groups.setdefault(key, []).append(i)
        out: list[Params] = [{} for _ in requests]
        self.net.train()
        with torch.no_grad():
            for members in groups.values():
                if len(members) == 1:
                    r = requests[members[0]]
                    out[members[0]] = self.adapt(r.support_x, r.support_y, r.options)
                    continue
                xs = torch.stack([requests[i].support_x for i in members])
                ys = torch.stack([requests[i].support_y for i in members])
                phis, outputs = vmap_tasks(self._serving_adapt(plans[members[0]]), xs, ys)
                for j, i in enumerate(members):
                    check_support_outputs(outputs[j], ys[j])
                    out[i] = {k: v[j].detach().contiguous() for k, v in phis.items()}
        return out

    def _adaptation(self, support_y: Tensor, options: AdaptOptions | None) -> tuple[int, float, int | None]:
        """(inner steps, inner-rate scale, classes) of one adaptation under its options."""
        options = options or AdaptOptions()
        steps = options.inner_steps
        if steps is None:
            steps = self.config.adapt_steps if self.config.adapt_steps is not None else self.config.inner_steps
        if not 0 <= steps <= MAX_ADAPT_STEPS:
            raise ValueError(f"inner_steps must be between 0 and {MAX_ADAPT_STEPS}")
        scale = 1.0 if options.inner_lr is None else options.inner_lr / self.config.inner_lr
        n_classes = int(support_y.max()) + 1 if self.spec.output == "classification" else None
        return steps, scale, n_classes

    def _serving_adapt(self, plan: tuple[int, float, int | None]) -> Callable[[Tensor, Tensor], tuple[Params, Tensor]]:
        """(support_x, support_y) -> (phi, outputs) under `plan`: the inner loop from theta (the head
        cut to the task's classes) and the support set's batch-norm statistics under the adapted
        weights, from one pass over the support set whose outputs (what phi predicts for the support
        inputs) come back for check_support_outputs. Run under no_grad, eagerly or under vmap_tasks."""
        steps, scale, n_classes = plan
        theta = {k: v.detach() for k, v in self._task_params(n_classes).items()}
        lr = self.inner_lr(theta, scale)
        lr = {k: v.detach() for k, v in lr.items()} if isinstance(lr, dict) else lr

        def adapt(support_x: Tensor, support_y: Tensor) -> tuple[Params, Tensor]:
            phi = self.adapt_from(theta, support_x, support_y, steps, lr, create_graph=False)
            if type(self).predict_with is MAML.predict_with and self._direct and applies(self.net, support_x):
                statistics, outputs = conv4_support_pass(self.net, phi, support_x)  # type: ignore[arg-type]
                return {**phi, **statistics}, outputs
            statistics, outputs = support_statistics(self.net, lambda: self.predict_with(theta, phi, support_x))
            return {**phi, **statistics}, outputs

        return adapt

    def predict(self, phi: Params, x: Tensor) -> Tensor:
        with torch.no_grad():
            if self._predicts_directly(phi, x):
                return conv4_predict(self.net, phi, x)  # type: ignore[arg-type]
        if x.dim() == 4 and len(x) <= 4:
            # A few images: channels-last runs max-pool vectorised over channels and the convolutions
            # on channels-last weights (Conv4-64, one 28x28 image, 1 thread: 2.5 to 1.5 ms; copying
            # the weights costs tens of microseconds); larger batches gain nothing from it.
            x = x.contiguous(memory_format=torch.channels_last)
            phi = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v for k, v in phi.items()}
        with torch.no_grad():
            return self.predict_with(dict(self.net.named_parameters()), phi, x)

    def serving_state(self, phi: Params) -> Params:
        """On the CPU, a Conv4 task with its support statistics as convolutions alone, the batch
        norms folded in and the weights channels-last (models.direct_grad.fold_batch_norms: a state
        that only conv4_predict reads); other Conv4 states with their convolution weights
        channels-last, the layout their predictions run in (oneDNN then reorders no weights per
        prediction: Conv4-64, one 28x28 image, 1 thread, 0.43 -> 0.35 ms; an ad-hoc measurement)."""
        if self.device.type != "cpu" or not isinstance(self.net, Conv4) or not nets.CHANNELS_LAST_ON_CPU:
            return phi
        if type(self).predict_with is MAML.predict_with and is_direct_conv4(self.net) and has_statistics(self.net, phi):
            return fold_batch_norms(self.net, phi)
        return {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v for k, v in phi.items()}

    def _predicts_directly(self, phi: Params, x: Tensor) -> bool:
        """Whether predict takes models.direct_grad.conv4_predict (a served Conv4 task on the CPU)."""
        return type(self).predict_with is MAML.predict_with and conv4_predicts(self.net, phi, x)

    def predict_many(self, requests: list[tuple[Params, Tensor]]) -> list[Tensor]:
        """One vmap over the stacked task states of each group of same-shaped requests
        (torch.func.functional_call per task inside it; vmap_tasks, so in_vmap() is true there),
        a plain predict for a lone one. Where predict takes the direct path (a served Conv4 task on
        the CPU), one direct predict per task instead: Conv4-64, one 28x28 image a task, 1 thread,
        the vmap took 2.73 / 4.05 / 7.27 / 13.19 ms for 2 / 4 / 8 / 16 tasks where the loop through
        functional_call took 1.72 / 3.41 / 6.83 / 14.07 and a direct predict about 0.43 a task (an
        ad-hoc measurement)."""
        with torch.no_grad():
            direct = [self._predicts_directly(phi, x) for phi, x in requests]
            outputs: list[Tensor | None] = [
                conv4_predict(self.net, phi, x) if d else None for (phi, x), d in zip(requests, direct, strict=True)  # type: ignore[arg-type]
            ]
            rest = [i for i, d in enumerate(direct) if not d]  # a folded state is never among them: it predicts only directly
            if rest:
                for i, out in zip(rest, self._predict_vmapped([requests[i] for i in rest]), strict=True):
                    outputs[i] = out
        return outputs  # type: ignore[return-value]

    def _predict_vmapped(self, requests: list[tuple[Params, Tensor]]) -> list[Tensor]:
        """One vmap over the stacked task states of each group of same-shaped requests, a plain
        predict for a lone one. Under no_grad (predict_many)."""
        outputs: list[Tensor | None] = [None] * len(requests)
        theta = dict(self.net.named_parameters())
        for group in same_shape_groups(requests):
            if len(group) == 1:
                outputs[group[0]] = self.predict(*requests[group[0]])
                continue
            phis = stack_states([requests[i][0] for i in group])
            xs = torch.stack([requests[i][1] for i in group])
            outs = vmap_tasks(lambda phi, x: self.predict_with(theta, phi, x), phis, xs)
            for j, i in enumerate(group):
                outputs[i] = outs[j]
        return outputs  # type: ignore[return-value]

    def state(self) -> Params:
        return {k: v.detach().clone().contiguous() for k, v in self.net.state_dict().items()}

    def load_state(self, tensors: Params) -> None:
        self.net.load_state_dict(tensors, strict=True)


class FOMAML(MAML):
    """First-order MAML: the meta-gradient is the query gradient at the adapted weights."""

    algorithm = "fomaml"

    @property
    def first_order(self) -> bool:
        return True


def cut_head(params: Params, n_classes: int | None, n_way: int) -> Params:
    """params with `head.*` (and anything shaped like it, e.g. its learned rates) cut to n_classes rows."""
    if n_classes is None or n_classes >= n_way:
        return params
    return {k: v[:n_classes] if k.startswith("head.") and v.dim() > 0 else v for k, v in params.items()}


def _add(total: Tensor | None, g: Tensor | None) -> Tensor | None:
    """total + g, where None is no gradient yet (or none at all: a parameter a task does not use)."""
    if g is None:
        return total
    return g if total is None else total + g


def _accumulate(totals: dict[str, float], metrics: dict[str, float], n: int) -> None:
    for k, v in metrics.items():
        totals[k] = totals.get(k, 0.0) + v / n
