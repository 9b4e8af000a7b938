"""Lake et al.'s one-shot benchmark format, end to end through `fewshot eval one-shot-runs`.

Builds 20 runs in the original format (20 characters of one alphabet per run, training and
test drawings by two different drawers) from the background alphabets held out of training
(split_by alphabet, seed 0), trains 20-way models through the worker's pipeline function into
a scratch data directory, and scores each with the CLI command. The original benchmark uses
10 evaluation alphabets and models trained on the 30 background ones: not comparable, listed
for orientation.

    python benchmarks/one_shot_runs.py --smoke
    python benchmarks/one_shot_runs.py                 # the CPU budget of RESULTS.md
    python benchmarks/one_shot_runs.py --steps 20000   # longer
    python benchmarks/one_shot_runs.py --learners maml --steps 6000 --augment on --name one_shot_runs-maml-budget
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from reporting import DATASETS, setup, write_results

from models.omniglot import load_omniglot, split_characters
from models.one_shot_runs import build_runs
from models.recipe import resolve
from store.db import Job, init_db, session_scope
from store.settings import Settings
from workers.pipelines import train_job

REFERENCES = "Lake et al. 2015 (30 background alphabets, 10 evaluation alphabets): people 4.5% error, BPL 3.3%, " \
             "Koch et al. 2015 siamese network 8.0%"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--learners", nargs="+", default=["protonet", "maml"])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--omniglot", type=Path, default=DATASETS / "omniglot")
    p.add_argument("--augment", choices=["default", "on", "off"], default="default",
                   help="the augment key (default: the recipe's, on for protonet)")
    p.add_argument("--name", default="one_shot_runs", help="results file name")
    args = p.parse_args()
    if args.smoke:
        args.steps, args.runs, args.channels = 3, 2, 8
    setup(args.threads)
    data = load_omniglot(args.omniglot, Path("/tmp/fewshot-bench-cache"))
    splits = split_characters(data, by="alphabet", seed=0)
    test_alphabets = sorted({data.alphabets[i] for i in splits["test"]})
    train_alphabets = sorted({data.alphabets[i] for i in splits["train"]})
    scratch = Path(tempfile.mkdtemp(prefix="fewshot-one-shot-"))
    runs_dir = scratch / "runs"
    build_runs(args.omniglot, runs_dir, test_alphabets, n_runs=args.runs)
    settings = Settings(data_dir=scratch / "data", omniglot_dir=args.omniglot)
    settings.data_dir.mkdir(parents=True)
    init_db(settings.sqlalchemy_url)
    results: dict[str, Any] = {}
    started = time.time()
    for algorithm in args.learners:
        t0 = time.time()
        model_id = train(algorithm, settings, args)
        train_s = time.time() - t0
        cli = [str(Path(sys.executable).parent / "fewshot"), "eval", "one-shot-runs", str(runs_dir), model_id,
               "--data-dir", str(settings.data_dir)]
        out = subprocess.run(cli, capture_output=True, text=True, check=True, timeout=1200).stdout
        errors = [float(m) for m in re.findall(r"^run\d+: error ([\d.]+)%", out, flags=re.M)]
        mean = float(re.search(r"mean error ([\d.]+)%", out).group(1))  # type: ignore[union-attr]
        results[algorithm] = {"mean_error": mean, "run_errors": errors, "train_seconds": round(train_s),
                              "eval_seconds": round(time.time() - t0 - train_s)}
        print(algorithm, results[algorithm], flush=True)
    wall = time.time() - started
    lines = [
        f"{args.runs} runs of 20-way 1-shot classification within one alphabet ({', '.join(test_alphabets)}, never trained on), "
        f"in Lake et al.'s format, scored by `fewshot eval one-shot-runs`. Models: 20-way, {args.steps} steps of one "
        f"1-shot task (5 queries per class), Conv4 {args.channels} channels, rotations, augment {args.augment}, on "
        f"{', '.join(train_alphabets)}. Wall time {wall / 60:.1f} min.",
        "",
        "| model | mean error % | train s |",
        "|---|---|---|",
        *[f"| {a} | {r['mean_error']:.1f} | {r['train_seconds']} |" for a, r in results.items()],
        "",
        f"For orientation only: {REFERENCES}.",
    ]
    write_results(args.name, {"settings": vars(args) | {"omniglot": str(args.omniglot)}, "test_alphabets": test_alphabets,
                                    "wall_seconds": round(wall), "results": results}, "\n".join(lines) + "\n")
    print(f"wall time {wall:.0f} s")


def train(algorithm: str, settings: Settings, args: argparse.Namespace) -> str:
    config = {"n_way": 20, "k_shot": 1, "k_query": 5, "meta_batch_size": 1, "steps": args.steps, "rotations": True,
              "split_by": "alphabet", "channels": args.channels, "meta_lr": 0.003, "eval_episodes": 20}
    if algorithm in ("maml", "metasgd", "anil"):
        config |= {"inner_lr": 0.4, "adapt_steps": 3}
    if algorithm == "finetune":  # as benchmarks/augmentation.py: pretraining batches, a head fitted per task
        config |= {"batch_size": 64, "inner_steps": 50, "inner_lr": 0.4}
    if args.augment != "default":
        config["augment"] = args.augment == "on"
    recipe = resolve(algorithm, "omniglot", config)
    with session_scope(settings.sqlalchemy_url) as session:
        job = Job(algorithm=algorithm, dataset="omniglot", config=recipe.to_json(), total_steps=recipe.training.steps)
        session.add(job)
        session.flush()
        job_id = job.id
    model_id = train_job(job_id, settings)
    if model_id is None:
        raise RuntimeError(f"training {algorithm} failed; see the log above")
    return model_id


if __name__ == "__main__":
    main()
