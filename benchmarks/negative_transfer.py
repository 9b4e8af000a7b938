"""Negative transfer, and how a weighting or gating choice mends it.

Two mtl-synthetic tasks (p = 0.5, d = 100) whose targets differ in magnitude: task 2's are
100 times task 1's. A shared bottom trained on the plain sum of MSEs spends itself on task 2
(its loss is 10^4 times larger) and task 1 ends worse than a network trained on task 1 alone:
sharing hurts it. The fixes compared, each on the same data, seeds and budget:
per-task target scaling (`scale_targets`), uncertainty weighting (`weighting: uncertainty`),
fixed weights w = (1, 1e-4) from the job (`task_weights`), and MMoE's per-task gates.

    .venv/bin/python benchmarks/negative_transfer.py           # about 3 minutes on 2 CPU cores
    .venv/bin/python benchmarks/negative_transfer.py --smoke   # seconds
    .venv/bin/python benchmarks/negative_transfer.py --long --device cuda

Writes benchmarks/results/negative_transfer.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from reporting import RESULTS  # noqa: E402  (FEWSHOT_BENCH_RESULTS redirects it)

from models.learners.multitask import MultiTaskConfig, MultiTaskLearner  # noqa: E402
from models.mtl_synthetic import MtlSyntheticTasks  # noqa: E402
from models.multitask.evaluation import training_task_metrics  # noqa: E402
from models.training import meta_train  # noqa: E402

SCALES = [1.0, 100.0]
SHARED = {"architecture": "multi-head", "hidden": [64], "tower": [8]}
VARIANTS: dict[str, dict[str, Any]] = {
    "task 1 alone (separate networks)": {"architecture": "separate", "hidden": [64, 8], "scale_targets": False},
    "shared bottom, plain sum": {**SHARED, "scale_targets": False},
    "shared bottom + target scaling": {**SHARED, "scale_targets": True},
    "shared bottom + uncertainty weighting": {**SHARED, "scale_targets": False, "weighting": "uncertainty"},
    "shared bottom + weights (1, 1e-4)": {**SHARED, "scale_targets": False, "task_weights": [1.0, 1e-4]},
    "mmoe, plain sum": {"architecture": "mmoe", "experts": 8, "expert_hidden": [8], "tower": [8], "scale_targets": False},
}


def run_one(variant: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    family = MtlSyntheticTasks(num_tasks=2, relatedness=0.5, input_dim=100, examples_per_task=args.examples,
                               k_support=10, k_query=118, seed=seed, task_scales=SCALES)
    torch.manual_seed(seed)
    learner = MultiTaskLearner(family.spec, MultiTaskConfig(task_names=family.task_names, lr=args.lr, **VARIANTS[variant]))
    learner.to(args.device)
    start = time.perf_counter()
    meta_train(learner, family, args.steps, meta_batch_size=2, seed=seed)
    test = training_task_metrics(learner, family, examples=args.test_examples, seed=seed)
    variance = family.train_y.var(dim=1)[:, 0].tolist()  # [2]: each task's mean-predictor MSE
    return {"variant": variant, "seed": seed, "task_1_mse": test["mse/task_1"], "task_2_mse": test["mse/task_2"],
            "task_1_relative": test["mse/task_1"] / variance[0], "task_2_relative": test["mse/task_2"] / variance[1],
            "seconds": round(time.perf_counter() - start, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--long", action="store_true", help="10000 steps and 5 seeds")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.smoke:
        args.seeds, args.steps, args.examples = 1, 20, 2000
    if args.long:
        args.seeds, args.steps = 5, 10_000
    args.test_examples = 500 if args.smoke else 5000
    torch.set_num_threads(1)
    started = time.perf_counter()
    runs = []
    for seed in range(args.seeds):
        for variant in VARIANTS:
            runs.append(run_one(variant, seed, args))
            print(f"seed={seed} {variant:40s} task 1 MSE {runs[-1]['task_1_mse']:.3f}  task 2 MSE {runs[-1]['task_2_mse']:.1f}", flush=True)
    summary: dict[str, dict[str, float]] = {}
    for variant in VARIANTS:
        mine = [r for r in runs if r["variant"] == variant]
        for key in ("task_1_mse", "task_2_relative"):
            values = [r[key] for r in mine]
            summary.setdefault(variant, {})[key] = statistics.mean(values)
            summary[variant][key + "_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    wall = time.perf_counter() - started
    command = " ".join(["python", *sys.argv])
    lines = [f"`{command}` ({wall:.1f} s wall; {args.seeds} seeds, {args.steps} steps, task 2 targets x100)", "",
             "| variant | task 1 test MSE | task 2 test MSE / its target variance |", "|---|---|---|"]
    for variant, s in summary.items():
        lines.append(f"| {variant} | {s['task_1_mse']:.3f} ± {s['task_1_mse_std']:.3f} | "
                     f"{s['task_2_relative']:.3f} ± {s['task_2_relative_std']:.3f} |")
    table = "\n".join(lines) + "\n"
    suffix = "-smoke" if args.smoke else ""
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"negative_transfer{suffix}.json").write_text(json.dumps(
        {"command": command, "wall_s": round(wall, 1), "steps": args.steps, "seeds": args.seeds, "scales": SCALES,
         "variants": VARIANTS, "summary": summary, "runs": runs}, indent=1))
    (args.out / f"negative_transfer{suffix}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
