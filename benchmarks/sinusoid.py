"""Sinusoid regression, K=5 at test: MSE after 1, 5 and 10 gradient steps, MAML against the
pretrained baseline, beside the MAML paper's figures (Finn et al. 2017, section 5.1).

Both use the paper's 1-40-40-1 ReLU MLP. MAML meta-trains on K=10 tasks, one inner step of
0.01, meta-batch 25, Adam 1e-3 (the paper: 70,000 steps); the baseline ("pretrained", the
`finetune` learner with scope "all") regresses 250 points of random waves per step, then both
take gradient steps of 0.01 on each test task's 5 support points. MSE over 100 query points
per task, 600 test tasks, 95% CI.

    python benchmarks/sinusoid.py --smoke     # seconds
    python benchmarks/sinusoid.py             # the CPU budget of RESULTS.md
    python benchmarks/sinusoid.py --long      # the paper's 70,000 steps
    python benchmarks/sinusoid.py --learners maml --meta-lr 0.01 --steps 10000 --name sinusoid-k5-recipe
                                              # the served default's meta_lr, a longer run (README)
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from reporting import setup, write_results

from models.learners import AdaptOptions, build_learner
from models.sinusoid import SinusoidTasks
from models.training import evaluate, meta_train

STEPS = (0, 1, 5, 10)
PAPER = {"maml": {1: 0.67, 5: 0.38, 10: 0.35}, "pretrained": {1: 2.41, 5: 2.23, 10: 2.19}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=2000, help="outer steps (MAML) and pretraining steps")
    p.add_argument("--episodes", type=int, default=600)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--long", action="store_true", help="the paper's 70,000 steps")
    p.add_argument("--name", default="sinusoid", help="results file name")
    p.add_argument("--meta-lr", type=float, default=0.001, help="MAML's outer learning rate (the paper's 0.001; the "
                   "served default on sinusoid is 0.01)")
    p.add_argument("--learners", default="maml,pretrained", help="comma-separated, of: maml, pretrained")
    args = p.parse_args()
    if args.smoke:
        args.steps, args.episodes = 20, 20
    if args.long:
        args.steps = 70_000
    setup(args.threads)
    train_tasks = SinusoidTasks(k_support=10, k_query=10)
    test_tasks = SinusoidTasks(k_support=5, k_query=100)
    learners = {
        "maml": ("maml", {"inner_steps": 1, "inner_lr": 0.01, "meta_lr": args.meta_lr}, 25),
        "pretrained": ("finetune", {"scope": "all", "inner_lr": 0.01, "batch_size": 250, "meta_lr": 0.001}, 1),
    }
    if unknown := set(args.learners.split(",")) - set(learners):
        p.error(f"unknown learners {sorted(unknown)}; choose from {list(learners)}")
    learners = {name: learners[name] for name in args.learners.split(",")}
    table: dict[str, Any] = {}
    started = time.time()
    for name, (algorithm, config, meta_batch) in learners.items():
        torch.manual_seed(0)
        learner = build_learner(algorithm, train_tasks.spec, config)
        t0 = time.time()
        meta_train(learner, train_tasks, args.steps, meta_batch, seed=0)
        train_s = time.time() - t0
        table[name] = {"train_seconds": round(train_s)}
        for k in STEPS:
            result = evaluate(learner, test_tasks, args.episodes, seed=0, options=AdaptOptions(inner_steps=k, inner_lr=0.01))
            table[name][k] = {"mse": round(result.mean, 3), "ci95": round(result.ci95, 3)}
        print(name, table[name], flush=True)
    wall = time.time() - started
    write_results(args.name, {"settings": vars(args), "wall_seconds": round(wall), "mse": table}, markdown(table, args, wall))
    print(f"wall time {wall:.0f} s")


def markdown(table: dict[str, Any], args: argparse.Namespace, wall: float) -> str:
    lines = [
        f"Sinusoid, K=5 support points at test, {args.episodes} test tasks, MSE (95% CI) after k steps of 0.01. "
        f"Ours: {args.steps} training steps (the paper: 70,000), MAML's meta_lr {args.meta_lr} (the paper: 0.001). "
        f"Wall time {wall / 60:.1f} min.",
        "",
        "| model | k=0 | k=1 | k=5 | k=10 | paper k=1 / 5 / 10 | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in table.items():
        cells = " | ".join(f"{row[k]['mse']:.2f} ± {row[k]['ci95']:.2f}" for k in STEPS)
        paper = " / ".join(f"{PAPER[name][k]:.2f}" for k in (1, 5, 10))
        lines.append(f"| {name} | {cells} | {paper} | {row['train_seconds']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
