"""Augmentation on Omniglot's one-shot runs: training with and without the `augment` key, scored
with and without test-time augmentation and feature normalisation (task options).

Builds the one-shot runs of benchmarks/one_shot_runs.py (20 runs of 20-way 1-shot within one
alphabet never trained on), meta-trains one learner with `augment` off and on (the rest as
one_shot_runs.py: 20-way 1-shot tasks, 5 queries, rotations, Conv4), then scores each model on
the runs under every combination of the options. Mean error % over the runs.

    python benchmarks/augmentation.py --smoke
    python benchmarks/augmentation.py --learner protonet --steps 1000
    python benchmarks/augmentation.py --learner finetune --steps 1000
    python benchmarks/augmentation.py --ways 60 --steps 3000 --lr-decay-every 600 --augment on --name augmentation-protonet-60way
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from reporting import DATASETS, setup, write_results

from models.learners import AdaptOptions, build_learner
from models.omniglot import load_omniglot, split_characters
from models.one_shot_runs import build_runs, read_runs, run_error
from models.recipe import DataSources, build_tasks, resolve
from models.training import meta_train

OPTIONS: dict[str, AdaptOptions] = {
    "plain": AdaptOptions(test_time_augmentation=0),  # explicit: the Omniglot recipe turns 8 views on by default
    "tta 8": AdaptOptions(test_time_augmentation=8),
    "norm": AdaptOptions(test_time_augmentation=0, feature_normalization=True),
    "tta 8 + norm": AdaptOptions(test_time_augmentation=8, feature_normalization=True),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--learner", default="protonet", choices=["protonet", "finetune"])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ways", type=int, default=20, help="training tasks' way (the runs are 20-way whatever this is)")
    p.add_argument("--lr-decay-every", type=int, default=None, help="protonet: halve meta_lr every this many steps")
    p.add_argument("--augment", choices=["both", "on", "off"], default="both")
    p.add_argument("--name", default=None, help="results file name (default augmentation-<learner>)")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--omniglot", type=Path, default=DATASETS / "omniglot")
    args = p.parse_args()
    if args.smoke:
        args.steps, args.runs, args.channels = 3, 2, 8
    setup(args.threads)
    cache = Path("/tmp/fewshot-bench-cache")
    data = load_omniglot(args.omniglot, cache)
    test_alphabets = sorted({data.alphabets[i] for i in split_characters(data, by="alphabet", seed=0)["test"]})
    runs_dir = Path(tempfile.mkdtemp(prefix="fewshot-augmentation-")) / "runs"
    build_runs(args.omniglot, runs_dir, test_alphabets, n_runs=args.runs)
    runs = read_runs(runs_dir)
    results: dict[str, Any] = {}
    started = time.time()
    for augment in {"both": (False, True), "on": (True,), "off": (False,)}[args.augment]:
        config = {"n_way": args.ways, "k_shot": 1, "k_query": 5, "meta_batch_size": 1, "steps": args.steps, "rotations": True,
                  "split_by": "alphabet", "channels": args.channels, "meta_lr": 0.003, "augment": augment}
        if args.learner == "finetune":
            config |= {"batch_size": 64, "inner_steps": 50, "inner_lr": 0.4}
        elif args.lr_decay_every:
            config["lr_decay_every"] = args.lr_decay_every
        recipe = resolve(args.learner, "omniglot", config)
        tasks = build_tasks(recipe, DataSources(args.omniglot, cache))
        torch.manual_seed(0)
        learner = build_learner(args.learner, tasks.spec, recipe.learner)
        t0 = time.time()
        meta_train(learner, tasks, args.steps, recipe.training.meta_batch_size, recipe.training.seed)
        train_s = time.time() - t0
        row: dict[str, Any] = {"train_seconds": round(train_s)}
        for name, options in OPTIONS.items():
            errors = [run_error(learner, run, options) for run in runs]
            row[name] = round(100 * sum(errors) / len(errors), 2)
        results["augment" if augment else "no augment"] = row
        print(args.learner, "augment" if augment else "no augment", row, flush=True)
    wall = time.time() - started
    lines = [
        f"{args.learner}: {args.runs} one-shot runs (20-way 1-shot within one alphabet of {', '.join(test_alphabets)}, "
        f"never trained on). Models: {args.ways}-way 1-shot tasks, 5 queries, meta_lr 0.003"
        f"{f' halved every {args.lr_decay_every} steps' if args.lr_decay_every else ''}, {args.steps} steps, Conv4 {args.channels} channels, "
        f"rotations, split_by alphabet. Mean error % per adaptation option (tta 8: test_time_augmentation 8; norm: "
        f"feature_normalization). Wall time {wall / 60:.1f} min.",
        "",
        "| training | " + " | ".join(OPTIONS) + " | train s |",
        "|---|" + "---|" * (len(OPTIONS) + 1),
        *[f"| {k} | " + " | ".join(f"{r[o]:.1f}" for o in OPTIONS) + f" | {r['train_seconds']} |" for k, r in results.items()],
    ]
    write_results((args.name or f"augmentation-{args.learner}") + ("-smoke" if args.smoke else ""),
                  {"settings": vars(args) | {"omniglot": str(args.omniglot)}, "results": results}, "\n".join(lines) + "\n")
    print(f"wall time {wall:.0f} s")


if __name__ == "__main__":
    main()
