"""Omniglot N-way K-shot accuracy of every learner of issue 3, on alphabets held out of training.

For each learner and each N (ways), one model is meta-trained on 1-shot tasks of the training
alphabets (rotations as extra classes, as in the MAML and ProtoNet papers), then evaluated on
1-shot and 5-shot tasks of the test alphabets (split_by alphabet): mean accuracy and 95% CI
over a fixed set of episodes. The papers train one model per setting, for 60,000 steps on
1,200 characters; the default budget here fits 2 CPU cores in minutes, and says so.

    python benchmarks/omniglot_learners.py --smoke              # seconds: does it run
    python benchmarks/omniglot_learners.py                      # the CPU budget of RESULTS.md
    python benchmarks/omniglot_learners.py --long --threads 16  # a longer run on a bigger machine (CPU)
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import torch
from reporting import DATASETS, setup, write_results

from models.learners import build_learner
from models.omniglot import OmniglotTasks, load_omniglot, split_characters
from models.recipe import resolve
from models.training import evaluate, meta_train

LEARNERS = ["maml", "fomaml", "metasgd", "anil", "protonet", "finetune"]
# Per-learner settings: MAML family adapts with 3 steps at test (5 for first-order, which
# trains with 3); fine-tuning fits its head with 50 steps on frozen features.
LEARNER_CONFIG: dict[str, dict[str, Any]] = {
    "maml": {"inner_steps": 1, "adapt_steps": 3, "inner_lr": 0.4},
    "fomaml": {"inner_steps": 3, "adapt_steps": 5, "inner_lr": 0.2},
    "metasgd": {"inner_steps": 1, "adapt_steps": 3, "inner_lr": 0.4},
    "anil": {"inner_steps": 1, "adapt_steps": 3, "inner_lr": 0.4},
    "protonet": {},
    "finetune": {"inner_steps": 50, "inner_lr": 0.4, "batch_size": 64},
}
PAPERS = {  # (ways, shots): accuracy %, with 1,200 training characters (MAML and ProtoNet papers)
    ("maml", 5, 1): 98.7, ("maml", 5, 5): 99.9, ("maml", 20, 1): 95.8, ("maml", 20, 5): 98.9,
    ("fomaml", 5, 1): 98.3, ("fomaml", 5, 5): 99.2, ("fomaml", 20, 1): 89.4, ("fomaml", 20, 5): 97.9,
    ("metasgd", 5, 1): 99.53, ("metasgd", 5, 5): 99.93, ("metasgd", 20, 1): 95.93, ("metasgd", 20, 5): 98.97,
    ("protonet", 5, 1): 98.8, ("protonet", 5, 5): 99.7, ("protonet", 20, 1): 96.0, ("protonet", 20, 5): 98.9,
    ("finetune", 5, 1): 86.0, ("finetune", 5, 5): 97.6, ("finetune", 20, 1): 72.9, ("finetune", 20, 5): 92.3,
}
PAPER_NAMES = {"maml": "Finn et al. 2017", "fomaml": "Finn et al. 2017 (first order)", "metasgd": "Li et al. 2017",
               "protonet": "Snell et al. 2017", "finetune": "Vinyals et al. 2016, baseline classifier"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--learners", nargs="+", default=LEARNERS, choices=LEARNERS)
    p.add_argument("--ways", nargs="+", type=int, default=[5, 20])
    p.add_argument("--shots", nargs="+", type=int, default=[1, 5])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--meta-batch", type=int, default=8, help="5-way tasks per step; N-way takes 5/N as many")
    p.add_argument("--k-query", type=int, default=5, help="query examples per class in meta-training")
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--meta-lr", type=float, default=0.003)
    p.add_argument("--eval-episodes", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--smoke", action="store_true", help="a few steps and episodes: checks that it runs")
    p.add_argument("--long", action="store_true", help="paper-like budget: 20,000 steps, 64 channels, 600 episodes")
    p.add_argument("--omniglot", type=Path, default=DATASETS / "omniglot")
    p.add_argument("--name", default="omniglot_learners", help="results file name")
    args = p.parse_args()
    if args.smoke:
        args.steps, args.eval_episodes, args.channels, args.meta_batch = 3, 5, 8, 2
    if args.long:
        args.steps, args.eval_episodes, args.channels, args.meta_batch, args.k_query = 20_000, 600, 64, 32, 15
    setup(args.threads)
    logging.basicConfig(level=logging.WARNING)
    data = load_omniglot(args.omniglot, Path("/tmp/fewshot-bench-cache"))
    splits = split_characters(data, by="alphabet", seed=0)
    test_alphabets = sorted({data.alphabets[i] for i in splits["test"]})
    train_alphabets = sorted({data.alphabets[i] for i in splits["train"]})
    print(f"train: {len(splits['train'])} characters of {train_alphabets}; test: {len(splits['test'])} of {test_alphabets}")
    rows: list[dict[str, Any]] = []
    started = time.time()
    for algorithm in args.learners:
        for ways in args.ways:
            rows += run_one(algorithm, ways, data, splits, args)
    wall = time.time() - started
    write_results(args.name, {"settings": vars(args) | {"omniglot": str(args.omniglot)}, "train_alphabets": train_alphabets,
                              "test_alphabets": test_alphabets, "wall_seconds": round(wall), "rows": rows},
                  markdown(rows, args, train_alphabets, test_alphabets, wall))
    print(f"wall time {wall:.0f} s")


def run_one(algorithm: str, ways: int, data: Any, splits: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    meta_batch = max(1, args.meta_batch * 5 // ways)  # about the same images per step at any N
    config = {"n_way": ways, "k_shot": 1, "k_query": args.k_query, "meta_batch_size": meta_batch, "steps": args.steps,
              "rotations": True, "split_by": "alphabet", "channels": args.channels, "meta_lr": args.meta_lr,
              **LEARNER_CONFIG[algorithm]}
    recipe = resolve(algorithm, "omniglot", config)
    train_tasks = OmniglotTasks(data, splits, ways, 1, args.k_query, rotations=True)
    torch.manual_seed(0)
    learner = build_learner(algorithm, train_tasks.spec, recipe.learner)
    t0 = time.time()
    meta_train(learner, train_tasks, args.steps, meta_batch, seed=0)
    train_s = time.time() - t0
    rows = []
    for shots in args.shots:
        test_tasks = OmniglotTasks(data, splits, ways, shots, 15 if shots + 15 <= 20 else 20 - shots, rotations=True)
        t1 = time.time()
        result = evaluate(learner, test_tasks, args.eval_episodes, seed=0)
        row = {"learner": algorithm, "ways": ways, "shots": shots, "accuracy": round(100 * result.mean, 2),
               "ci95": round(100 * result.ci95, 2), "episodes": result.episodes, "train_seconds": round(train_s),
               "eval_seconds": round(time.time() - t1), "paper": PAPERS.get((algorithm, ways, shots))}
        print(row, flush=True)
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace, train: list[str], test: list[str], wall: float) -> str:
    lines = [
        f"Omniglot, split by alphabet: trained on {', '.join(train)}; tested on {', '.join(test)} (never seen).",
        f"Each model: {args.steps} meta-training steps of {args.meta_batch} 5-way (or {max(1, args.meta_batch // 4)} 20-way) "
        f"1-shot tasks ({args.k_query} queries per class); fine-tuning: {args.steps} supervised batches of 64; "
        f"Conv4 with {args.channels} channels, rotations as classes; evaluated on {args.eval_episodes} test episodes "
        f"with 15 queries per class. Wall time {wall / 60:.1f} min.",
        "",
        "| learner | N-way | K-shot | ours (accuracy %, 95% CI) | paper (1,200 training characters) | train s | eval s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        paper = f"{r['paper']} ({PAPER_NAMES[r['learner']]})" if r["paper"] is not None else "-"
        lines.append(f"| {r['learner']} | {r['ways']} | {r['shots']} | {r['accuracy']:.1f} ± {r['ci95']:.1f} | {paper} "
                     f"| {r['train_seconds']} | {r['eval_seconds']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
