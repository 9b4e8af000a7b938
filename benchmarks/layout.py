"""Conv4 channels-last on the CPU (models.nets.CHANNELS_LAST_ON_CPU) against NCHW, in the paths that
run it: predictions, MAML's adaptation (inner loop and the support pass), second- and first-order
MAML meta-steps beside the supervised floor of benchmarks/meta_training_speed.py (a plain forward
and backward over the same images, task by task), ProtoNet's adaptation (with and without
test-time augmentation) and meta-training step. Both layouts alternate in one process, on the
same learners and inputs, with the workers' malloc settings (workers.memory.keep_freed_memory);
medians and ratios.

    python benchmarks/layout.py
    python benchmarks/layout.py --channels 32 --name layout-32    # ProtoNet's Omniglot width
    python benchmarks/layout.py --smoke
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F
from reporting import alternating_medians, setup, write_results

import models.nets as nets
from models.episodes import Episode, ProblemSpec
from models.learners import AdaptOptions, build_learner
from workers.memory import keep_freed_memory


def use(channels_last: bool) -> None:
    nets.CHANNELS_LAST_ON_CPU = channels_last


def images(n: int, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=g)


def cases(channels: int) -> dict[str, Callable[[], object]]:
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    five = ProblemSpec((1, 28, 28), "classification", n_way=5)
    maml = build_learner("maml", five, {"channels": channels, "inner_lr": 0.4, "inner_steps": 1, "adapt_steps": 5})
    fomaml = build_learner("fomaml", five, {"channels": channels, "inner_lr": 0.4, "inner_steps": 1})
    protonet = build_learner("protonet", ProblemSpec((1, 28, 28), "classification", n_way=60), {"channels": channels})
    support_x, support_y = images(5, g), torch.arange(5)
    phi = maml.adapt(support_x, support_y)
    queries = {n: images(n, g) for n in (1, 16, 64)}
    twenty_x, twenty_y = images(20, g), torch.arange(20)
    twenty_phi = protonet.adapt(twenty_x, twenty_y, AdaptOptions(test_time_augmentation=0))
    sixty = [Episode(images(60, g), torch.arange(60), images(300, g), torch.arange(60).repeat(5))]
    meta_batch = [Episode(images(5, g), torch.arange(5), images(75, g), torch.arange(5).repeat(15)) for _ in range(4)]
    floor_net = nets.Conv4(1, 28, 5, channels)
    floor_net.load_state_dict(maml.net.state_dict())
    floor_opt = torch.optim.Adam(floor_net.parameters(), lr=1e-3)

    def floor_step() -> None:  # benchmarks/meta_training_speed.py's floor: the same images, plain
        floor_opt.zero_grad(set_to_none=True)
        for ep in meta_batch:
            loss = F.cross_entropy(floor_net(ep.support_x), ep.support_y) + F.cross_entropy(floor_net(ep.query_x), ep.query_y)
            (loss / len(meta_batch)).backward()
        floor_opt.step()

    return {
        **{f"MAML predict, {n} image{'s' if n > 1 else ''}": (lambda x=x: maml.predict(phi, x)) for n, x in queries.items()},
        "MAML adapt, 5-way 1-shot, 5 steps": lambda: maml.adapt(support_x, support_y),
        "MAML second-order meta-step, 4 tasks of 5-way 1-shot, 15 queries": lambda: maml.meta_train_step(meta_batch),
        "MAML first-order meta-step, the same": lambda: fomaml.meta_train_step(meta_batch),
        "supervised floor of those 4 tasks": floor_step,
        "ProtoNet adapt, 20-way 1-shot": lambda: protonet.adapt(twenty_x, twenty_y, AdaptOptions(test_time_augmentation=0)),
        "ProtoNet adapt, 20-way 1-shot, 8 test-time views":
            lambda: protonet.adapt(twenty_x, twenty_y, AdaptOptions(test_time_augmentation=8)),
        "ProtoNet predict, 16 images": lambda: protonet.predict(twenty_phi, queries[16]),
        "ProtoNet meta-training step, 60-way 1-shot, 5 queries": lambda: protonet.meta_train_step(sixty),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--channels", type=int, default=64, help="Conv4 width (ProtoNet's Omniglot recipe uses 32)")
    p.add_argument("--repeats", type=int, default=40, help="calls timed per layout and case (meta-steps: a quarter)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    p.add_argument("--name", default="layout", help="results file name")
    args = p.parse_args()
    name = args.name
    if args.smoke:
        args.channels, args.repeats, name = 8, 4, "layout-smoke"
    setup(args.threads)
    malloc_tuned = keep_freed_memory()
    rows = []
    for label, call in cases(args.channels).items():
        repeats = max(args.repeats // 4, 2) if "step" in label else args.repeats
        nchw, fast = alternating_medians(call, use, repeats)
        rows.append({"case": label, "nchw_ms": round(nchw, 2), "channels_last_ms": round(fast, 2),
                     "ratio": round(nchw / fast, 2), "calls": repeats})
        print(f"{label}: NCHW {nchw:.2f} ms, channels-last {fast:.2f} ms, {nchw / fast:.2f}x", flush=True)
    by = {r["case"]: r for r in rows}
    so, floor = by["MAML second-order meta-step, 4 tasks of 5-way 1-shot, 15 queries"], by["supervised floor of those 4 tasks"]
    floors = {layout: round(so[f"{layout}_ms"] / floor[f"{layout}_ms"], 2) for layout in ("nchw", "channels_last")}
    lines = [
        f"Conv4-{args.channels} on 1x28x28, {args.threads} torch thread(s), in process (workers' malloc settings: "
        f"{malloc_tuned}); per layout and case {args.repeats} calls ({max(args.repeats // 4, 2)} for meta-steps), "
        "alternating; medians.",
        "",
        "| path | NCHW ms | channels-last ms | ratio |",
        "|---|---|---|---|",
        *[f"| {r['case']} | {r['nchw_ms']:.2f} | {r['channels_last_ms']:.2f} | {r['ratio']:.2f}x |" for r in rows],
        "",
        f"Second-order meta-step over the floor, each in its layout: NCHW {floors['nchw']:.2f}x, "
        f"channels-last {floors['channels_last']:.2f}x.",
    ]
    write_results(name, {"settings": vars(args), "malloc_tuned": malloc_tuned, "rows": rows, "so_over_floor": floors},
                  "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
