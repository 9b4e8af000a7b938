"""How a MAML meta-batch should run on this device: a loop over tasks, the tasks across the torch
threads (one intra-op thread each), or one vmap over them.

Second-order MAML on Conv4, 5-way 1-shot, 15 queries per class; seconds per outer step and
peak resident memory, each mode in its own process, beside a plain forward and backward
pass over the same images (the floor any meta-batch pays). The learners' default
(`meta_batch_mode`) is `threads`, which is the loop where torch has one thread or on CUDA.

    python benchmarks/meta_batch_modes.py --smoke
    python benchmarks/meta_batch_modes.py                    # meta-batch 8, 64 channels
    python benchmarks/meta_batch_modes.py --meta-batch 32    # the issue's setting (GBs under vmap)
    python benchmarks/meta_batch_modes.py --threads 2        # where `threads` differs from the loop
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from reporting import DATASETS, peak_device_mb, setup, synchronize, write_results

from models.device import to_device
from models.learners import build_learner
from models.omniglot import OmniglotTasks, load_omniglot, split_characters

MODES = ("plain", "loop", "threads", "vmap")


def measure(mode: str, args: argparse.Namespace) -> dict[str, float]:
    setup(args.threads)
    data = load_omniglot(DATASETS / "omniglot", Path("/tmp/fewshot-bench-cache"))
    tasks = OmniglotTasks(data, split_characters(data, by="alphabet", seed=0), 5, 1, 15)
    torch.manual_seed(0)
    learner = build_learner("maml", tasks.spec, {"channels": args.channels, "inner_lr": 0.4,
                                                 "meta_batch_mode": "loop" if mode == "plain" else mode})
    device = torch.device(args.device)
    learner.to(device)
    generator = torch.Generator().manual_seed(0)
    batches = [to_device(tasks.sample("train", args.meta_batch, generator), device) for _ in range(args.steps + 1)]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def step(episodes) -> None:  # type: ignore[no-untyped-def]
        if mode == "plain":  # one forward and backward over the same images, no inner loop
            learner.optimizer.zero_grad()
            x = torch.cat([torch.cat([e.support_x, e.query_x]) for e in episodes])
            y = torch.cat([torch.cat([e.support_y, e.query_y]) for e in episodes])
            learner.loss(learner.net(x), y).backward()
            learner.optimizer.step()
        else:
            learner.meta_train_step(episodes)

    step(batches[0])  # warm-up
    synchronize(device)
    t0 = time.perf_counter()
    for episodes in batches[1:]:
        step(episodes)
    synchronize(device)
    seconds = (time.perf_counter() - t0) / args.steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds_per_step": round(seconds, 4), "peak_rss_mb": round(peak / 1024), "rss_before_mb": round(rss_before / 1024),
            "peak_cuda_mb": peak_device_mb(device)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--meta-batch", type=int, default=8)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (benchmarks/gpu.sh)")
    p.add_argument("--name", default="meta_batch_modes", help="results file name")
    p.add_argument("--measure", choices=MODES, help=argparse.SUPPRESS)  # one mode, in a child process
    args = p.parse_args()
    if args.smoke:
        args.meta_batch, args.channels, args.steps = 2, 8, 1
    if args.measure:
        print(json.dumps(measure(args.measure, args)))
        return
    setup(args.threads)
    results = {}
    for mode in MODES:
        child = [sys.executable, sys.argv[0], "--measure", mode, "--meta-batch", str(args.meta_batch),
                 "--channels", str(args.channels), "--steps", str(args.steps), "--threads", str(args.threads), "--device", args.device]
        out = subprocess.run(child, capture_output=True, text=True, check=True, timeout=1200).stdout
        results[mode] = json.loads(out.strip().splitlines()[-1])
        print(mode, results[mode], flush=True)
    plain = results["plain"]["seconds_per_step"]
    faster = min(("loop", "threads", "vmap"), key=lambda m: results[m]["seconds_per_step"])
    lines = [
        f"Second-order MAML, Conv4 ({args.channels} channels), 5-way 1-shot, 15 queries, meta-batch {args.meta_batch} "
        f"({args.meta_batch * 80} images), 1 inner step; mean of {args.steps} steps after a warm-up; device {args.device}, "
        f"{args.threads} torch thread(s).",
        "",
        "| mode | s / step | x plain fwd+bwd | peak RSS MB | peak CUDA MB |",
        "|---|---|---|---|---|",
    ]
    for mode, r in results.items():
        cuda = "-" if r.get("peak_cuda_mb") is None else r["peak_cuda_mb"]
        lines.append(f"| {mode} | {r['seconds_per_step']:.3f} | {r['seconds_per_step'] / plain:.2f} | {r['peak_rss_mb']} | {cuda} |")
    lines += ["", f"Faster here: **{faster}**. The learners' default `meta_batch_mode` is `threads` (the loop at one "
              "torch thread and on CUDA)."]
    write_results(args.name, {"settings": vars(args), "results": results, "faster": faster}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
