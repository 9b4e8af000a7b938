"""In-process adaptation and prediction latency: our MAML.adapt against learn2learn and higher.

One task, 5-way 1-shot, Conv4 (64 channels) on 1x28x28 inputs, 5 inner steps at inner lr 0.4
(issue 8: learn2learn took 46 ms here; issue 15's target: 25 ms or less). All adapt the same
initial weights on the same support set, in this process, alternating, and must end at the
same adapted weights. learn2learn is timed as its users adapt: `clone()` then `adapt()` per
step, with its default (second-order, the graph kept) and with first_order=True; higher with
`innerloop_ctx` and an SGD differentiable optimiser, tracking higher gradients (its default)
and not. "ours, autograd" is our adapt with the step gradients from autograd
(models.direct_grad.DIRECT_ON_CPU off), the path before the direct gradients. The process runs
with the workers' malloc settings (workers.memory.keep_freed_memory), as the adapt worker does.
Prediction: our `predict(phi, x)` for one 28x28 image, as a hot task serves it.

    python benchmarks/adaptation_speed.py --smoke
    python benchmarks/adaptation_speed.py                  # 1 torch thread
    python benchmarks/adaptation_speed.py --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from reporting import RESULTS, command, setup, synchronize, write_results
from thirdparty import NotInstalled, higher_module, learn2learn_maml, library_net
from torch import Tensor, nn

from models import direct_grad
from models.episodes import ProblemSpec
from models.learners import AdaptOptions, build_learner
from models.learners.maml import MAML
from workers.memory import keep_freed_memory

SPEC = ProblemSpec((1, 28, 28), "classification", n_way=5)
ISSUE_L2L_MS = 46.0
TARGET_MS = 25.0


def with_weights_of(learner: MAML, channels: int) -> nn.Module:
    """The libraries' Conv4 (benchmarks/thirdparty.py), holding the learner's weights."""
    net = library_net(channels)
    net.load_state_dict(learner.state())
    return net.to(learner.device)


def l2l_adapt(net: nn.Module, steps: int, first_order: bool, x: Tensor, y: Tensor) -> Callable[[], dict[str, Tensor]]:
    maml = learn2learn_maml()(net, lr=0.4, first_order=first_order)

    def adapt() -> dict[str, Tensor]:
        learner = maml.clone()
        for _ in range(steps):
            learner.adapt(F.cross_entropy(learner(x), y))
        return {k.removeprefix("module."): v for k, v in learner.named_parameters()}

    return adapt


def higher_adapt(net: nn.Module, steps: int, first_order: bool, x: Tensor, y: Tensor) -> Callable[[], dict[str, Tensor]]:
    lib = higher_module()
    names = [name for name, _ in net.named_parameters()]
    inner_opt = torch.optim.SGD(net.parameters(), lr=0.4)

    def adapt() -> dict[str, Tensor]:
        with lib.innerloop_ctx(net, inner_opt, track_higher_grads=not first_order) as (fnet, diffopt):
            for _ in range(steps):
                diffopt.step(F.cross_entropy(fnet(x), y))
            return dict(zip(names, fnet.parameters(), strict=True))

    return adapt


def autograd_gradients(adapt: Callable[[], dict[str, Tensor]]) -> Callable[[], dict[str, Tensor]]:
    """adapt() with our step gradients from autograd (the direct path off for the call)."""

    def call() -> dict[str, Tensor]:
        direct_grad.DIRECT_ON_CPU = False
        try:
            return adapt()
        finally:
            direct_grad.DIRECT_ON_CPU = True

    return call


def timed_ms(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """Wall and CPU (user + system) milliseconds of one call; CPU is steadier on a busy machine."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    synchronize(device)
    return (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--steps", type=int, default=5, help="inner steps")
    p.add_argument("--repeats", type=int, default=200, help="adaptations timed per implementation")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (benchmarks/gpu.sh)")
    p.add_argument("--name", default="adaptation_speed", help="results file name")
    p.add_argument("--profile", action="store_true", help="also torch.profiler over 20 of our adaptations: <name>-profile.txt")
    args = p.parse_args()
    name = args.name
    device = torch.device(args.device)
    if args.smoke:
        args.channels, args.repeats, name = 8, 2, "adaptation_speed-smoke"
    setup(args.threads)
    malloc_tuned = keep_freed_memory()
    torch.manual_seed(0)
    learner = build_learner("maml", SPEC, {"channels": args.channels, "inner_lr": 0.4, "inner_steps": args.steps})
    assert isinstance(learner, MAML)
    learner.to(device)
    generator = torch.Generator().manual_seed(0)
    support_x, support_y = torch.rand(5, 1, 28, 28, generator=generator).to(device), torch.arange(5, device=device)
    image = torch.rand(1, 1, 28, 28, generator=generator).to(device)

    ours = lambda: learner.adapt(support_x, support_y, AdaptOptions(inner_steps=args.steps))  # noqa: E731
    impls: dict[str, Callable[[], dict[str, Tensor]]] = {"ours": ours, "ours, autograd": autograd_gradients(ours)}
    for library, build in (("learn2learn", l2l_adapt), ("higher", higher_adapt)):
        try:
            for first_order in (False, True):
                label = f"{library} first_order" if first_order else library
                impls[label] = build(with_weights_of(learner, args.channels), args.steps, first_order, support_x, support_y)
        except NotInstalled as e:
            print(f"skipping {library}: {e}")
    phi = impls["ours"]()
    for label, adapt in impls.items():  # the same adapted weights (ours also stores the support set's batch-norm statistics)
        other = adapt()
        assert set(other) <= set(phi), f"{label} adapted parameters ours lacks: {sorted(set(other) - set(phi))}"
        diff = max(float((v.detach() - phi[k]).abs().max()) for k, v in other.items())
        assert diff < 1e-4, f"{label} adapted to different weights than ours (max difference {diff:.2e})"
    times: dict[str, list[float]] = {label: [] for label in impls}
    cpu: dict[str, list[float]] = {label: [] for label in impls}
    for _ in range(3):  # warm-up
        for adapt in impls.values():
            adapt()
    for _ in range(args.repeats):  # alternating, so load from elsewhere falls on every implementation
        for label, adapt in impls.items():
            wall, used = timed_ms(adapt, device)
            times[label].append(wall)
            cpu[label].append(used)
    predict_ms = [timed_ms(lambda: learner.predict(phi, image), device)[0] for _ in range(args.repeats * 5)]

    medians = {label: round(statistics.median(t), 2) for label, t in times.items()}
    p90 = {label: round(statistics.quantiles(t, n=10)[-1], 2) if len(t) > 1 else t[0] for label, t in times.items()}
    cpu_medians = {label: round(statistics.median(t), 2) for label, t in cpu.items()}
    predict = round(statistics.median(predict_ms), 3)
    for label in impls:
        print(f"adapt {label}: median {medians[label]:.2f} ms, p90 {p90[label]:.2f} ms, cpu {cpu_medians[label]:.2f} ms")
    print(f"predict (1 image): median {predict:.3f} ms")
    lines = [
        f"Adapting one 5-way 1-shot task, Conv4 ({args.channels} channels), {args.steps} inner steps at lr 0.4, "
        f"in process, device {args.device}, {args.threads} torch thread(s), workers' malloc settings ({malloc_tuned}); "
        f"{args.repeats} adaptations per implementation, alternating. All end at the same adapted weights (asserted).",
        "",
        "| implementation | median ms | p90 ms | median cpu ms |",
        "|---|---|---|---|",
        *[f"| {label} | {medians[label]:.2f} | {p90[label]:.2f} | {cpu_medians[label]:.2f} |" for label in impls],
        "",
        f"Target: ours {TARGET_MS:.0f} ms or less (learn2learn measured {ISSUE_L2L_MS:.0f} ms by issue 8's author); "
        + ", ".join(f"{label} / ours {medians[label] / medians['ours']:.2f}x" for label in impls if label != "ours") + ".",
        "",
        f"Prediction for one 28x28 image with a task's adapted weights (`MAML.predict`): median {predict:.3f} ms "
        f"over {len(predict_ms)} calls.",
    ]
    if args.profile:
        with torch.profiler.profile() as prof:
            for _ in range(20):
                impls["ours"]()
        top = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
        print(top)
        (RESULTS / f"{name}-profile.txt").write_text(f"Command: `{command()}`\n\n20 adaptations, key_averages by self CPU:\n\n{top}\n")
    write_results(name, {"settings": vars(args), "malloc_tuned": malloc_tuned, "adapt_median_ms": medians, "adapt_p90_ms": p90,
                         "adapt_median_cpu_ms": cpu_medians,
                         "predict_one_image_median_ms": predict}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
