"""The sweep behind MAML's sinusoid defaults (issue 14): `"config": {}` should train in under
10 minutes on 2 cores and adapt from K=10 points to MSE <= 0.6.

One run per meta_lr (the rest as the defaults: K=10 support and query points, 25 tasks a step,
inner_lr 0.01, one inner step in training), scored on 600 meta-test waves every --every steps
after 1, 5 and 10 adaptation steps of 0.01: one run gives the whole steps axis. Run one meta_lr
per call to keep each locked run short.

    python benchmarks/sinusoid_defaults.py --smoke
    python benchmarks/sinusoid_defaults.py --meta-lrs 0.001 --steps 6000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
from reporting import setup, write_results

from models.learners import AdaptOptions, build_learner
from models.recipe import DataSources, build_tasks, resolve
from models.training import evaluate, meta_train

ADAPT_STEPS = (1, 5, 10)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--meta-lrs", nargs="+", type=float, default=[0.001, 0.003, 0.01])
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--every", type=int, default=2000)
    p.add_argument("--episodes", type=int, default=600)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args()
    if args.smoke:
        args.steps, args.every, args.episodes, args.meta_lrs = 4, 2, 5, args.meta_lrs[:1]
    setup(args.threads)
    rows: list[dict[str, Any]] = []
    started = time.time()
    for meta_lr in args.meta_lrs:
        rows += run(meta_lr, args)
    wall = time.time() - started
    lines = [
        f"MAML on sinusoid, K=10 support points, {args.episodes} meta-test waves: MSE (95% CI) after k adaptation steps "
        f"of 0.01. Grid: meta_lr {args.meta_lrs} x steps (every {args.every} up to {args.steps}); the rest the defaults. "
        f"Train s: training time alone, 1 thread. Wall time {wall / 60:.1f} min.",
        "",
        "| meta_lr | steps | k=1 | k=5 | k=10 | train s |",
        "|---|---|---|---|---|---|",
        *[f"| {r['meta_lr']:g} | {r['steps']} | " + " | ".join(f"{r[f'k{k}']:.3f} ± {r[f'k{k}_ci95']:.3f}" for k in ADAPT_STEPS)
          + f" | {r['train_seconds']} |" for r in rows],
    ]
    suffix = "-smoke" if args.smoke else "-" + "-".join(f"{lr:g}" for lr in args.meta_lrs)
    write_results(f"sinusoid_defaults{suffix}", {"settings": vars(args), "rows": rows}, "\n".join(lines) + "\n")


def run(meta_lr: float, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Train one model with this meta_lr; score it every args.every steps."""
    rows: list[dict[str, Any]] = []
    recipe = resolve("maml", "sinusoid", {"steps": args.steps, "meta_lr": meta_lr})
    tasks = build_tasks(recipe, DataSources(Path("unused")))
    torch.manual_seed(0)
    learner = build_learner("maml", tasks.spec, recipe.learner)
    t0 = time.time()
    train_s = 0.0

    def on_step(step: int, total: int, metrics: dict[str, float]) -> None:
        nonlocal t0, train_s
        if step % args.every and step != total:
            return
        train_s += time.time() - t0
        row: dict[str, Any] = {"meta_lr": meta_lr, "steps": step, "train_seconds": round(train_s)}
        for k in ADAPT_STEPS:
            result = evaluate(learner, tasks, args.episodes, seed=0, options=AdaptOptions(inner_steps=k))
            row[f"k{k}"], row[f"k{k}_ci95"] = round(result.mean, 3), round(result.ci95, 3)
        rows.append(row)
        print(row, flush=True)
        t0 = time.time()

    meta_train(learner, tasks, args.steps, recipe.training.meta_batch_size, recipe.training.seed, on_step)
    return rows


if __name__ == "__main__":
    main()
