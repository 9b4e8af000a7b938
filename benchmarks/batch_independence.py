"""Held-out accuracy of the MAML family when queries are sent one at a time, beside batched ones.

Before issue 13, a MAML-family task normalised each request with the batch-norm statistics of
the request's own inputs (transductive, as the MAML paper evaluates): one image sent alone was
normalised by itself. Now a task stores its support set's statistics and every request uses
them. For each learner, one model is meta-trained on Omniglot alphabets (1-shot tasks), then the
same test episodes are scored three ways:

- `transductive, batched`: the old serving, all of an episode's queries in one request;
- `transductive, one at a time`: the old serving, each query its own request;
- `stored support statistics`: the served answer now, the same batched or alone (tested).

    python benchmarks/batch_independence.py --smoke   # seconds: does it run
    python benchmarks/batch_independence.py           # the figures of benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from reporting import DATASETS, setup, write_results

from models.learners import build_learner
from models.nets import TASK_STATISTICS
from models.omniglot import OmniglotTasks, load_omniglot, split_characters
from models.recipe import resolve
from models.training import TEST_SEED_OFFSET, meta_train

LEARNERS = ["maml", "fomaml", "metasgd", "anil"]
LEARNER_CONFIG: dict[str, dict[str, Any]] = {  # as benchmarks/omniglot_learners.py
    "maml": {"inner_steps": 1, "adapt_steps": 3, "inner_lr": 0.4},
    "fomaml": {"inner_steps": 3, "adapt_steps": 5, "inner_lr": 0.2},
    "metasgd": {"inner_steps": 1, "adapt_steps": 3, "inner_lr": 0.4},
    "anil": {"inner_steps": 1, "adapt_steps": 3, "inner_lr": 0.4},
}
MODES = ("transductive, batched", "transductive, one at a time", "stored support statistics")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--learners", nargs="+", default=LEARNERS, choices=LEARNERS)
    p.add_argument("--ways", type=int, default=5)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--meta-batch", type=int, default=8)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--eval-episodes", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--smoke", action="store_true", help="a few steps and episodes: checks that it runs")
    p.add_argument("--omniglot", type=Path, default=DATASETS / "omniglot")
    args = p.parse_args()
    if args.smoke:
        args.steps, args.eval_episodes, args.channels, args.meta_batch, args.learners = 2, 3, 8, 2, ["maml", "anil"]
    setup(args.threads)
    logging.basicConfig(level=logging.WARNING)
    data = load_omniglot(args.omniglot, Path("/tmp/fewshot-bench-cache"))
    splits = split_characters(data, by="alphabet", seed=0)
    rows = []
    started = time.time()
    for algorithm in args.learners:
        rows.append(run_one(algorithm, data, splits, args))
        print(rows[-1], flush=True)
    wall = time.time() - started
    write_results("batch_independence", {"settings": vars(args) | {"omniglot": str(args.omniglot)}, "rows": rows,
                                         "wall_seconds": round(wall)}, markdown(rows, args, wall))


def run_one(algorithm: str, data: Any, splits: Any, args: argparse.Namespace) -> dict[str, Any]:
    config = {"n_way": args.ways, "k_shot": 1, "k_query": 5, "meta_batch_size": args.meta_batch, "steps": args.steps,
              "rotations": True, "split_by": "alphabet", "channels": args.channels, "meta_lr": 0.003,
              **LEARNER_CONFIG[algorithm]}
    recipe = resolve(algorithm, "omniglot", config)
    tasks = OmniglotTasks(data, splits, args.ways, 1, 15, rotations=True)
    torch.manual_seed(0)
    learner = build_learner(algorithm, tasks.spec, recipe.learner)
    t0 = time.time()
    meta_train(learner, tasks, args.steps, args.meta_batch, seed=0)
    train_s = time.time() - t0
    scores: dict[str, list[float]] = {mode: [] for mode in MODES}
    generator = torch.Generator().manual_seed(TEST_SEED_OFFSET)
    for ep in tasks.sample("test", args.eval_episodes, generator):
        phi = learner.adapt(ep.support_x, ep.support_y)
        old = {k: v for k, v in phi.items() if not k.endswith(TASK_STATISTICS)}  # what a task stored before
        outputs = {
            MODES[0]: learner.predict(old, ep.query_x),
            MODES[1]: torch.cat([learner.predict(old, x[None]) for x in ep.query_x]),
            MODES[2]: learner.predict(phi, ep.query_x),
        }
        for mode, out in outputs.items():
            scores[mode].append(float((out.argmax(-1) == ep.query_y).float().mean()))
    row: dict[str, Any] = {"learner": algorithm, "train_seconds": round(train_s), "episodes": args.eval_episodes}
    for mode, values in scores.items():
        mean = sum(values) / len(values)
        var = sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)
        row[mode] = {"accuracy": round(100 * mean, 2), "ci95": round(100 * 1.96 * math.sqrt(var / len(values)), 2)}
    return row


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace, wall: float) -> str:
    lines = [
        f"Omniglot {args.ways}-way 1-shot, split by alphabet (test alphabets never seen); each model "
        f"{args.steps} meta-training steps of {args.meta_batch} tasks, Conv4 with {args.channels} channels; "
        f"{args.eval_episodes} test episodes with 15 queries per class, the same episodes in every column "
        f"(accuracy %, 95% CI). Wall time {wall / 60:.1f} min.",
        "",
        "| learner | " + " | ".join(MODES) + " |",
        "|---|" + "---|" * len(MODES),
    ]
    for r in rows:
        cells = [f"{r[m]['accuracy']:.1f} ± {r[m]['ci95']:.1f}" for m in MODES]
        lines.append(f"| {r['learner']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
