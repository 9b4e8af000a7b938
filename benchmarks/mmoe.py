"""MMoE's headline on mtl-synthetic (Ma et al., KDD 2018, section 4 and figure 4).

Two regression tasks whose weight vectors have cosine p in {0.5, 0.9, 1.0}; held-out test MSE
of shared-bottom, multi-head, MMoE and separate networks over several seeds (each seed draws
its own task weights, data and initialisation). The paper found shared-bottom degrades as p
falls while MMoE holds up.

    .venv/bin/python benchmarks/mmoe.py            # about 7 minutes on 2 busy CPU cores
    .venv/bin/python benchmarks/mmoe.py --smoke    # seconds: checks the script runs
    .venv/bin/python benchmarks/mmoe.py --long --device cuda   # more steps and seeds, on a GPU

Writes benchmarks/results/mmoe.json (every run, the summary, the command and wall time),
mmoe.md (the table) and mmoe.png (test MSE over training per p, and final MSE against p).
"""

from __future__ import annotations

import argparse
import json
import logging
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

log = logging.getLogger("benchmarks.mmoe")

# Comparable sizes: 64 hidden units below 8-unit towers (MMoE: 8 experts of 8 units); separate
# networks are each shared-bottom's network (64 then 8) for one task; multi-head has linear heads.
MODELS: dict[str, dict[str, Any]] = {
    "shared-bottom": {"architecture": "multi-head", "hidden": [64], "tower": [8]},
    "multi-head": {"architecture": "multi-head", "hidden": [64], "tower": []},
    "mmoe": {"architecture": "mmoe", "experts": 8, "expert_hidden": [8], "tower": [8]},
    "separate": {"architecture": "separate", "hidden": [64, 8]},
}
RELATEDNESS = (0.5, 0.9, 1.0)


def run_one(model: str, p: float, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    family = MtlSyntheticTasks(num_tasks=2, relatedness=p, input_dim=100, examples_per_task=args.examples,
                               k_support=10, k_query=args.batch - 10, seed=seed)
    torch.manual_seed(seed)
    config = MultiTaskConfig(task_names=family.task_names, lr=args.lr, **MODELS[model])
    learner = MultiTaskLearner(family.spec, config).to(args.device)
    curve: list[tuple[int, float]] = []
    every = max(args.steps // args.points, 1)

    def record(step: int, total: int, metrics: dict[str, float]) -> None:
        if step % every == 0 or step == total:
            test = training_task_metrics(learner, family, examples=args.eval_examples, seed=seed)
            curve.append((step, test["mse_training_tasks"]))

    start = time.perf_counter()
    meta_train(learner, family, args.steps, meta_batch_size=2, seed=seed, on_step=record)
    final = training_task_metrics(learner, family, examples=args.test_examples, seed=seed)
    return {"model": model, "p": p, "seed": seed, "test_mse": final["mse_training_tasks"],
            "test_mse_per_task": [final["mse/task_1"], final["mse/task_2"]],
            "target_variance": float(family.train_y.var(dim=1).mean()), "curve": curve,
            "seconds": round(time.perf_counter() - start, 2)}


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    table: dict[str, dict[str, dict[str, float]]] = {}
    for model in MODELS:
        for p in RELATEDNESS:
            values = [r["test_mse"] for r in runs if r["model"] == model and r["p"] == p]
            if values:
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                table.setdefault(model, {})[str(p)] = {"mean": statistics.mean(values), "std": std, "n": len(values)}
    return table


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [f"Held-out test MSE (mean ± std over {meta['seeds']} seeds; 2 tasks, d = 100, {meta['steps']} steps)", "",
             "| model | " + " | ".join(f"p = {p}" for p in RELATEDNESS) + " | p=0.5 minus p=1.0 |",
             "|---|" + "---|" * (len(RELATEDNESS) + 1)]
    for model, by_p in summary.items():
        cells = [f"{by_p[str(p)]['mean']:.3f} ± {by_p[str(p)]['std']:.3f}" for p in RELATEDNESS]
        drop = by_p["0.5"]["mean"] - by_p["1.0"]["mean"]
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {drop:+.3f} |")
    return "\n".join(lines) + "\n"


def plot(runs: list[dict[str, Any]], summary: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib
    except ImportError:  # the `bench` extra: CI's smoke runs go without it
        print(f"matplotlib not installed (pip install -e '.[bench]'): {path.name} not drawn")
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(RELATEDNESS) + 1, figsize=(4.2 * (len(RELATEDNESS) + 1), 3.6))
    for ax, p in zip(axes, RELATEDNESS, strict=False):
        for model in MODELS:
            curves = [r["curve"] for r in runs if r["model"] == model and r["p"] == p]
            steps = [s for s, _ in curves[0]]
            values = torch.tensor([[v for _, v in c] for c in curves])  # [seeds, points]
            mean, std = values.mean(0), values.std(0) if len(curves) > 1 else torch.zeros(len(steps))
            ax.plot(steps, mean, label=model)
            ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
        ax.set_title(f"p = {p}")
        ax.set_xlabel("step")
        ax.set_ylabel("test MSE")
    ax = axes[-1]
    for model, by_p in summary.items():
        ax.errorbar(RELATEDNESS, [by_p[str(p)]["mean"] for p in RELATEDNESS],
                    yerr=[by_p[str(p)]["std"] for p in RELATEDNESS], marker="o", capsize=3, label=model)
    ax.set_xlabel("task relatedness p")
    ax.set_ylabel("final test MSE")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a few steps, one seed: seconds")
    parser.add_argument("--long", action="store_true", help="10000 steps and 5 seeds (for a GPU or a long run)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=128, help="examples per task per step")
    parser.add_argument("--examples", type=int, default=100_000, help="training examples per task")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--points", type=int, default=10, help="points on each test-loss curve")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.smoke:
        args.seeds, args.steps, args.examples, args.points = 1, 20, 2000, 2
    if args.long:
        args.seeds, args.steps = 5, 10_000
    args.eval_examples, args.test_examples = (200, 500) if args.smoke else (1000, 5000)
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.perf_counter()
    runs = []
    for p in RELATEDNESS:
        for seed in range(args.seeds):
            for model in MODELS:
                runs.append(run_one(model, p, seed, args))
                r = runs[-1]
                log.info("p=%.1f seed=%d %-13s test MSE %.3f (%.1fs)", p, seed, model, r["test_mse"], r["seconds"])
    summary = summarise(runs)
    wall = time.perf_counter() - started
    meta = {"command": " ".join(["python", *sys.argv]), "wall_s": round(wall, 1), "seeds": args.seeds,
            "steps": args.steps, "batch_per_task": args.batch, "examples_per_task": args.examples, "lr": args.lr,
            "device": args.device, "models": MODELS, "torch_threads": torch.get_num_threads()}
    suffix = "-smoke" if args.smoke else ""
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"mmoe{suffix}.json").write_text(json.dumps({**meta, "summary": summary, "runs": runs}, indent=1))
    table = markdown(summary, meta)
    (args.out / f"mmoe{suffix}.md").write_text(f"`{meta['command']}` ({meta['wall_s']} s wall)\n\n{table}")
    plot(runs, summary, args.out / f"mmoe{suffix}.png")
    print(table)
    print(f"wall time {wall:.1f} s; written to {args.out}/mmoe{suffix}.{{json,md,png}}")


if __name__ == "__main__":
    main()
