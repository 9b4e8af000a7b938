"""What the arithmetic allows: issue 15's speed targets against the work they require.

Counts floating-point operations with torch's own FlopCounterMode (torch.utils.flop_counter: the
convolutions, their backward kernels and the matrix products, as dispatched), and measures what
this machine's one core does with them:

- Meta-training (point 4): FLOPs of one task's meta-gradient, ours with `meta_batch_mode` "loop"
  (the same work as the threads) for the four configurations of meta_training_speed.py, against
  that benchmark's floor (a plain forward and backward pass over the task's support and query
  sets). Second-order MAML's double backward through the support pass is work the floor does not
  do: where its FLOPs alone exceed 1.1x the floor's, "1.1x the floor" needs its convolutions to run
  faster per FLOP than the floor's own.
- Serving's adaptation (point 3): FLOPs of one 5-way 1-shot Conv4-64 adaptation of 5 steps (the
  direct path, models.direct_grad), this core's float32 matrix-product rate (a 1024 x 1024 sgemm,
  the best the BLAS does here), and the adaptation's convolutions timed one by one at their own
  shapes (oneDNN, channels-last, as the adaptation runs them). Two lower bounds: every FLOP at the
  sgemm rate, and the convolutions alone at their measured speed.
- Bursts (point 3): a burst of B adaptations 3x faster than B in sequence, on C cores, may spend at
  most C x (sequence time a task) / 3 of CPU a task, everything included (API, queue, worker,
  storage, client). With `--burst NAME`, the sequence time comes from benchmarks/results/NAME.json
  (adaptation_burst.py's "batched" mode, median of its runs), set beside the bounds above.

    python benchmarks/flop_bounds.py --smoke
    python benchmarks/flop_bounds.py --burst adaptation_burst-session16
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections.abc import Callable
from functools import partial

import meta_training_speed as mts
import torch
import torch.nn.functional as F
from reporting import RESULTS, median_ms, setup, write_results
from thirdparty import NotInstalled
from torch.utils.flop_counter import FlopCounterMode

from models.episodes import Episode
from models.learners import AdaptOptions, build_learner
from models.nets import Conv4, channels_last

CPU = torch.device("cpu")


def flops_per_task(step: Callable[[list[Episode]], float], episodes: list[Episode]) -> float:
    step(episodes)  # first call outside the counter: lazy set-up is not the step's work
    with FlopCounterMode(display=False) as counter:
        step(episodes)
    return counter.get_total_flops() / len(episodes)


def sgemm_gflops(size: int, repeats: int) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size**3 / median_ms(lambda: a @ b, repeats, warmup=3) / 1e6


def convolution_ms(channels: int, images: int, steps: int, repeats: int) -> dict[str, float]:
    """The adaptation's convolutions at their shapes, each timed alone: per layer one forward and
    one backward (input and weight gradients; the first layer's input needs none); an adaptation
    runs steps + 1 forwards (the last for the support statistics) and steps backwards."""
    rows: dict[str, float] = {}
    total = 0.0
    c_in, side = 1, 28
    for layer in range(4):
        x = channels_last(torch.rand(images, c_in, side, side))
        w = torch.randn(channels, c_in, 3, 3).contiguous(memory_format=torch.channels_last)
        bias = torch.randn(channels)
        gy = torch.randn_like(F.conv2d(x, w, bias, padding=1))
        mask = [layer > 0, True, True]
        fwd = median_ms(partial(F.conv2d, x, w, bias, padding=1), repeats)
        bwd = median_ms(partial(torch.ops.aten.convolution_backward, gy, x, w, [channels], [1, 1], [1, 1], [1, 1], False,
                                [0, 0], 1, mask), repeats)
        rows[f"{c_in}->{channels} at {side}x{side}"] = round(fwd * (steps + 1) + bwd * steps, 3)
        total += fwd * (steps + 1) + bwd * steps
        c_in, side = channels, side // 2
    rows["all"] = round(total, 3)
    return rows


def adaptation(channels: int, steps: int, repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    spec = mts.SPEC
    learner = build_learner("maml", spec, {"channels": channels, "inner_lr": 0.4, "inner_steps": steps})
    x, y = torch.rand(5, *spec.input_shape), torch.arange(5)
    adapt = lambda: learner.adapt(x, y, AdaptOptions(inner_steps=steps))  # noqa: E731
    adapt()
    with FlopCounterMode(display=False) as counter:
        adapt()
    return {"gflop": counter.get_total_flops() / 1e9, "measured_ms": median_ms(adapt, repeats)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--queries", type=int, default=15, help="query images per class (meta_training_speed.py's)")
    p.add_argument("--repeats", type=int, default=100, help="timed calls per measurement (medians)")
    p.add_argument("--burst", help="adaptation_burst results (a name in benchmarks/results) for the sequence time a task")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--name", default="flop_bounds")
    args = p.parse_args()
    name = args.name
    if args.smoke:
        args.channels, args.queries, args.repeats, name = 8, 2, 5, "flop_bounds-smoke"
    setup(1)
    steps = 5

    torch.manual_seed(0)
    state = {k: v.clone() for k, v in Conv4(1, 28, mts.SPEC.n_way, args.channels).state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    episodes = [mts.random_episode(args.queries, generator) for _ in range(2)]
    floor = flops_per_task(mts.floor(state, False, 1, args.channels, CPU), episodes)
    training: dict[str, dict[str, float]] = {}
    for config, (first_order, inner_steps) in mts.CONFIGS.items():
        ours = flops_per_task(mts.ours(state, first_order, inner_steps, args.channels, CPU, mode="loop"), episodes)
        row = {"ours_gflop": ours / 1e9, "ours_over_floor": ours / floor}
        try:
            row["learn2learn_over_floor"] = flops_per_task(mts.learn2learn(state, first_order, inner_steps, args.channels, CPU), episodes) / floor
        except NotInstalled:
            pass
        training[config] = row
        print(f"{config}: {ours / 1e9:.3f} GFLOP a task, {ours / floor:.3f}x the floor's {floor / 1e9:.3f}")

    gflops = sgemm_gflops(256 if args.smoke else 1024, args.repeats)
    adapt = adaptation(args.channels, steps, args.repeats)
    convs = convolution_ms(args.channels, 5, steps, args.repeats)
    at_peak_ms = adapt["gflop"] / gflops * 1000
    print(f"adaptation: {adapt['gflop']:.3f} GFLOP, measured {adapt['measured_ms']:.2f} ms; sgemm {gflops:.1f} GFLOP/s "
          f"-> {at_peak_ms:.2f} ms at that rate; its convolutions alone {convs['all']:.2f} ms")

    burst: dict[str, float] = {}
    if args.burst:
        saved = json.loads((RESULTS / f"{args.burst}.json").read_text())
        sequence_s = statistics.median(saved["modes"]["batched"]["sequence_s"]) / saved["tasks"]
        cores = os.cpu_count() or 1
        burst = {"sequence_ms_a_task": sequence_s * 1000, "cores": cores, "cpu_budget_ms_a_task": cores * sequence_s * 1000 / 3}
        print(f"3x burst: at most {burst['cpu_budget_ms_a_task']:.2f} ms of CPU a task on {cores} cores "
              f"(sequence {sequence_s * 1000:.2f} ms a task, {args.burst})")

    lines = [
        f"FLOPs by torch.utils.flop_counter.FlopCounterMode; Conv4-{args.channels}, 5-way 1-shot, {args.queries} queries a "
        "class; times at 1 torch thread, medians.",
        "",
        f"Meta-training, one task (meta_training_speed.py's configurations; ours in meta_batch_mode \"loop\"); the floor, "
        f"a plain forward and backward over the support and query sets: {floor / 1e9:.3f} GFLOP.",
        "",
        "| config | ours GFLOP | ours / floor, FLOPs | learn2learn / floor, FLOPs |",
        "|---|---|---|---|",
        *[f"| {mts.CONFIG_NAMES[c]} | {r['ours_gflop']:.3f} | {r['ours_over_floor']:.3f} | "
          f"{r.get('learn2learn_over_floor', float('nan')):.3f} |" for c, r in training.items()],
        "",
        f"Served adaptation (5 steps, the direct path): {adapt['gflop']:.3f} GFLOP, measured {adapt['measured_ms']:.2f} ms. "
        f"This core's sgemm: {gflops:.1f} GFLOP/s, so at least **{at_peak_ms:.2f} ms** at that rate. Its convolutions "
        f"timed alone at their shapes (steps + 1 forwards, steps backwards): **{convs['all']:.2f} ms** "
        f"({', '.join(f'{k}: {v:.2f}' for k, v in convs.items() if k != 'all')}).",
    ]
    if burst:
        lines += ["", f"A burst 3x faster than the sequence ({args.burst}: {burst['sequence_ms_a_task']:.2f} ms a task) on "
                  f"{burst['cores']} cores may spend at most **{burst['cpu_budget_ms_a_task']:.2f} ms** of CPU a task in all; "
                  f"the adaptation's convolutions alone take {convs['all']:.2f} ms of it."]
    write_results(name, {"floor_gflop": floor / 1e9, "training": training, "sgemm_gflops": gflops, "adaptation": adapt,
                         "adaptation_convolutions_ms": convs, "adaptation_at_sgemm_rate_ms": at_peak_ms, "burst": burst},
                  "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
