"""The channels-last max-pool (models.nets.max_pool_2x2) against torch's plain one, in the paths
that run it: forward passes without a gradient (predictions, ProtoNet's adaptation with and
without test-time augmentation), MAML's inner loop (forward and backward), a second-order MAML
meta-step and a ProtoNet meta-training step. Both kernels alternate in one process, on the same
learners and inputs, with the workers' malloc settings (workers.memory.keep_freed_memory:
without them page faults on fresh activations hide the kernels); medians and ratios.

    python benchmarks/pooling.py
    python benchmarks/pooling.py --channels 32 --name pooling-32    # ProtoNet's Omniglot width
    python benchmarks/pooling.py --smoke
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

CHANNELS_LAST_POOL = nets.max_pool_2x2


def plain_pool(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 2)


def use(channels_last: bool) -> None:
    nets.max_pool_2x2 = CHANNELS_LAST_POOL if channels_last else plain_pool


def cases(channels: int) -> dict[str, Callable[[], object]]:
    torch.manual_seed(0)
    maml = build_learner("maml", ProblemSpec((1, 28, 28), "classification", n_way=5),
                         {"channels": channels, "inner_lr": 0.4, "inner_steps": 5})
    protonet = build_learner("protonet", ProblemSpec((1, 28, 28), "classification", n_way=20), {"channels": channels})
    support_x, support_y = torch.rand(5, 1, 28, 28), torch.arange(5)
    phi = maml.adapt(support_x, support_y)
    queries = torch.rand(16, 1, 28, 28)
    twenty_x, twenty_y = torch.rand(20, 1, 28, 28), torch.arange(20)
    episode = Episode(twenty_x, twenty_y, torch.rand(100, 1, 28, 28), torch.arange(20).repeat(5))
    meta_batch = [Episode(torch.rand(5, 1, 28, 28), torch.arange(5), torch.rand(75, 1, 28, 28), torch.arange(5).repeat(15))
                  for _ in range(4)]
    return {
        "MAML predict, 16 images": lambda: maml.predict(phi, queries),
        "ProtoNet adapt, 20-way 1-shot": lambda: protonet.adapt(twenty_x, twenty_y, AdaptOptions(test_time_augmentation=0)),
        "ProtoNet adapt, 20-way 1-shot, 8 test-time views":
            lambda: protonet.adapt(twenty_x, twenty_y, AdaptOptions(test_time_augmentation=8)),
        "ProtoNet meta-training step, 20-way 1-shot, 5 queries": lambda: protonet.meta_train_step([episode]),
        "MAML second-order meta-step, 4 tasks of 5-way 1-shot, 15 queries": lambda: maml.meta_train_step(meta_batch),
        "MAML adapt, 5-way 1-shot, 5 steps":
            lambda: maml.adapt(support_x, support_y, AdaptOptions(inner_steps=5)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--channels", type=int, default=64, help="Conv4 width (ProtoNet's Omniglot recipe uses 32)")
    p.add_argument("--repeats", type=int, default=60, help="calls timed per kernel and case")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    p.add_argument("--name", default="pooling", help="results file name")
    args = p.parse_args()
    name = args.name
    if args.smoke:
        args.channels, args.repeats, name = 8, 2, "pooling-smoke"
    setup(args.threads)
    malloc_tuned = keep_freed_memory()
    rows = []
    for label, call in cases(args.channels).items():
        plain, fast = alternating_medians(call, use, args.repeats)
        rows.append({"case": label, "plain_ms": round(plain, 2), "channels_last_ms": round(fast, 2),
                     "ratio": round(plain / fast, 2)})
        print(f"{label}: plain {plain:.2f} ms, channels-last {fast:.2f} ms, {plain / fast:.2f}x")
    lines = [
        f"Conv4-{args.channels} on 1x28x28, {args.threads} torch thread(s), in process (workers' malloc settings: "
        f"{malloc_tuned}); {args.repeats} calls per kernel and case, alternating; medians.",
        "",
        "| path | plain max-pool ms | channels-last max-pool ms | ratio |",
        "|---|---|---|---|",
        *[f"| {r['case']} | {r['plain_ms']:.2f} | {r['channels_last_ms']:.2f} | {r['ratio']:.2f}x |" for r in rows],
    ]
    write_results(name, {"settings": vars(args), "malloc_tuned": malloc_tuned, "rows": rows}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
