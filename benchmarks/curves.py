"""Learning curves of the default recipes: training and meta-val metrics against steps and wall
time, drawn from the progress events a real job records (the numbers the console shows).

Each recipe runs as a job through the worker's pipeline function (`"config": {}` unless
--steps shortens it), in a scratch data directory; its `progress` events (step, elapsed_s,
training metrics, val_* with their 95% CI) become a PNG (matplotlib: the `bench` extra) and a
JSON of the points under benchmarks/results/curves-<algorithm>-<dataset>.*. An Omniglot recipe's
model is also scored on one-shot runs (Lake et al.'s format, 20-way 1-shot within one alphabet)
built from the alphabets its job held out as meta-test, with and without test-time augmentation.

    python benchmarks/curves.py --smoke
    python benchmarks/curves.py --recipes maml:sinusoid              # the default recipe, 2,000 steps
    python benchmarks/curves.py --recipes protonet:omniglot --steps 300
    python benchmarks/curves.py --recipes protonet:omniglot --tag=-session9   # results beside the earlier ones
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from reporting import DATASETS, RESULTS, setup, write_results

from models.learners import AdaptOptions
from models.one_shot_runs import build_runs, read_runs, run_error
from models.recipe import resolve
from store.db import Job, JobEvent, Model, init_db, session_scope
from store.settings import Settings
from workers.pipelines import model_learner, train_job

RUNS_OPTIONS = {"plain": AdaptOptions(test_time_augmentation=0), "tta 8": AdaptOptions(test_time_augmentation=8)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", nargs="+", default=["maml:sinusoid", "protonet:omniglot"], help="algorithm:dataset")
    p.add_argument("--steps", type=int, default=None, help="shorten the recipe (default: its own steps)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--omniglot", type=Path, default=DATASETS / "omniglot")
    p.add_argument("--runs", type=int, default=20, help="one-shot runs scored for an Omniglot recipe")
    p.add_argument("--tag", default="", help="suffix of the result files (curves-<algorithm>-<dataset><tag>.*)")
    args = p.parse_args()
    setup(args.threads)
    scratch = Path(tempfile.mkdtemp(prefix="fewshot-curves-"))
    settings = Settings(data_dir=scratch, omniglot_dir=args.omniglot)
    init_db(settings.sqlalchemy_url)
    for recipe_name in args.recipes:
        algorithm, dataset = recipe_name.split(":")
        config: dict[str, Any] = {}
        if args.steps is not None:
            config["steps"] = args.steps
        if args.smoke:
            config.update(steps=4, meta_batch_size=2, eval_episodes=4, eval_every=2, checkpoint_every=0)
            if dataset == "omniglot":
                config.update(channels=8, k_query=2)
        recipe = resolve(algorithm, dataset, config)
        with session_scope(settings.sqlalchemy_url) as session:
            job = Job(algorithm=algorithm, dataset=dataset, config=recipe.to_json(), total_steps=recipe.training.steps)
            session.add(job)
            session.flush()
            job_id = job.id
        started = time.time()
        model_id = train_job(job_id, settings)
        wall = time.time() - started
        if model_id is None:
            raise RuntimeError(f"{recipe_name} failed; see the log above")
        with session_scope(settings.sqlalchemy_url) as session:
            events = session.query(JobEvent).filter(JobEvent.job_id == job_id).order_by(JobEvent.seq).all()
            points = [dict(e.data) for e in events if e.type == "progress"]
            final = next(dict(e.data) for e in reversed(events) if e.type == "status")
        name = f"curves-{algorithm}-{dataset}" + ("-smoke" if args.smoke else "") + args.tag
        drawn = plot(points, recipe_name, RESULTS / f"{name}.png")
        metrics = final.get("metrics", {})
        runs = one_shot_runs(settings, model_id, args.omniglot, 2 if args.smoke else args.runs) if dataset == "omniglot" else {}
        lines = [
            f"{recipe_name}, config {config or '{}'} ({recipe.training.steps} steps, validation every "
            f"{recipe.training.eval_every} on {recipe.training.val_episodes} meta-val tasks). Wall time {wall / 60:.1f} min.",
            "",
            f"Final (kept: {metrics.get('kept')} at step {metrics.get('kept_step')}): "
            + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float)),
            "",
            *([f"One-shot runs ({runs['runs']} runs of 20-way 1-shot within one held-out alphabet: "
               f"{', '.join(runs['alphabets'])}), mean error %: "
               + ", ".join(f"{k} {v:.2f}" for k, v in runs["error_percent"].items()), ""] if runs else []),
            f"![learning curves]({name}.png)" if drawn else "(matplotlib not installed: no PNG)",
        ]
        write_results(name, {"recipe": recipe_name, "config": config, "wall_seconds": round(wall), "final": metrics,
                             "one_shot_runs": runs, "points": points}, "\n".join(lines) + "\n")
        print(recipe_name, f"{wall:.0f} s", metrics, runs.get("error_percent", ""), flush=True)


def one_shot_runs(settings: Settings, model_id: str, omniglot: Path, n_runs: int) -> dict[str, Any]:
    """Mean error of the stored model on one-shot runs built from its meta-test alphabets (adapted
    and queried through the learner the adapt worker loads), per adaptation option."""
    with session_scope(settings.sqlalchemy_url) as session:
        model = session.get(Model, model_id)
        assert model is not None and model.splits is not None
        learner = model_learner(model, settings)
        test = model.splits["test"]["names"]
    alphabets = sorted({name.split("/")[0] for name in test})
    runs_dir = Path(tempfile.mkdtemp(prefix="fewshot-curves-runs-"))
    build_runs(omniglot, runs_dir, alphabets, n_runs=n_runs)
    runs = read_runs(runs_dir)
    errors = {k: 100 * sum(run_error(learner, run, o) for run in runs) / len(runs) for k, o in RUNS_OPTIONS.items()}
    return {"runs": len(runs), "alphabets": alphabets, "error_percent": {k: round(v, 2) for k, v in errors.items()}}


def plot(points: list[dict[str, Any]], title: str, path: Path) -> bool:
    try:
        import matplotlib
    except ImportError:  # the `bench` extra: CI's smoke runs go without it
        print(f"matplotlib not installed (pip install -e '.[bench]'): {path.name} not drawn")
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = "accuracy" if any("accuracy" in p["metrics"] for p in points) else "mse"
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, x_key, x_label in ((axes[0], "step", "step"), (axes[1], "elapsed_s", "wall time (s)")):
        train = [(p[x_key], p["metrics"][metric]) for p in points if metric in p["metrics"]]
        ax.plot([x for x, _ in train], [y for _, y in train], label=f"train {metric} (meta-batch)", alpha=0.6)
        val = [p for p in points if p["metrics"].get("val_step") == p["step"]]
        xs = [p[x_key] for p in val]
        ys = [p["metrics"][f"val_{metric}"] for p in val]
        ci = [p["metrics"][f"val_{metric}_ci95"] for p in val]
        ax.errorbar(xs, ys, yerr=ci, marker="o", capsize=3, label=f"meta-val {metric} (95% CI)")
        ax.set_xlabel(x_label)
        ax.set_ylabel(metric)
        if metric == "mse":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


if __name__ == "__main__":
    main()
