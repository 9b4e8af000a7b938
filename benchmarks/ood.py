"""Out-of-distribution tasks after Finn & Levine (2018, "Meta-learning and universality", 7.2).

Meta-train on Omniglot (5-way 1-shot, the alphabets of blackbox_omniglot.py's training split),
then meta-test on tasks whose every image (support and query) is sheared or scaled by an
increasing amount: tasks of held-out Omniglot characters and tasks of MNIST digits. The paper
found MAML's accuracy degrades less than black-box learners' as the tasks move away from the
training distribution. Learners: MAML, ProtoNet (if registered), mann, attention.

    .venv/bin/python benchmarks/ood.py                        # trains the four, then tests: minutes
    .venv/bin/python benchmarks/ood.py --models /tmp/bb-models  # reuse blackbox_omniglot.py --save-models
    .venv/bin/python benchmarks/ood.py --smoke                # seconds: checks the script runs
    .venv/bin/python benchmarks/ood.py --long                 # 10x the training steps, 64 channels

Writes benchmarks/results/ood[-smoke].json (numbers, command, wall time), .md and .png.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from benchmarks.blackbox_omniglot import CACHE, OMNIGLOT, RESULTS, ROOT, algorithm_of, build, meta_batch  # noqa: E402
from models.episodes import Episode, ProblemSpec, Split, TaskFamily  # noqa: E402
from models.learners import LEARNERS, Learner  # noqa: E402
from models.mnist import MnistTasks, load_mnist  # noqa: E402
from models.omniglot import OmniglotTasks, load_omniglot, split_characters  # noqa: E402
from models.training import evaluate, meta_train  # noqa: E402

log = logging.getLogger("benchmarks.ood")
MNIST = ROOT.parent / "shared" / "datasets" / "mnist"
SHEARS = (0.0, 0.25, 0.5, 0.75, 1.0)  # x' = x + shear * y (1.0 is a 45 degree slant)
SCALES = (1.0, 0.85, 0.7, 0.55, 0.4)  # drawings shrunk about the centre


def affine(images: torch.Tensor, shear: float, scale: float) -> torch.Tensor:
    """[B, 1, H, W] images sheared and scaled about the centre; the background stays 0."""
    # affine_grid maps output coordinates to input ones, so the inverse transform goes in.
    forward = torch.tensor([[scale, scale * shear], [0.0, scale]])
    inverse = torch.linalg.inv(forward)
    theta = torch.cat([inverse, torch.zeros(2, 1)], dim=1).expand(len(images), 2, 3)  # [B, 2, 3]
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@dataclass
class TransformedTasks:
    """A task family whose images, support and query alike, all go through one affine transform."""

    base: TaskFamily
    shear: float = 0.0
    scale: float = 1.0

    @property
    def spec(self) -> ProblemSpec:
        return self.base.spec

    def sample(self, split: Split, n_tasks: int, generator: torch.Generator) -> list[Episode]:
        return [
            Episode(affine(ep.support_x, self.shear, self.scale), ep.support_y, affine(ep.query_x, self.shear, self.scale), ep.query_y)
            for ep in self.base.sample(split, n_tasks, generator)
        ]


def trained_learner(name: str, train_tasks: OmniglotTasks, args: argparse.Namespace) -> Learner:
    learner = build(name, train_tasks, args.channels, args.seed)
    saved = Path(args.models or "") / f"{name}-5way-1shot.safetensors"
    if args.models and saved.exists():
        learner.load_state(load_file(saved))
        log.info("%s: loaded %s", name, saved)
        return learner
    start = time.perf_counter()
    meta_train(learner, train_tasks, args.steps, meta_batch(args.meta_batch, 5), args.seed)
    log.info("%s: meta-trained %d steps in %.1f s", name, args.steps, time.perf_counter() - start)
    if args.models:
        saved.parent.mkdir(parents=True, exist_ok=True)
        save_file(learner.state(), saved)
    return learner


def sweep(learner: Learner, families: dict[str, TaskFamily], args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    curves: dict[str, list[dict[str, Any]]] = {}
    for family_name, family in families.items():
        for kind, values in (("shear", SHEARS), ("scale", SCALES)):
            points = []
            for v in values:
                shifted = TransformedTasks(family, shear=v if kind == "shear" else 0.0, scale=v if kind == "scale" else 1.0)
                result = evaluate(learner, shifted, args.eval_episodes, args.seed)  # same base tasks at every strength
                points.append({kind: v, "accuracy": round(result.mean, 4), "ci95": round(result.ci95, 4)})
            curves[f"{family_name}/{kind}"] = points
    return curves


def plot(results: dict[str, dict[str, list[dict[str, Any]]]], path: Path, title: str) -> None:
    try:
        import matplotlib
    except ImportError:  # the `bench` extra: CI's smoke runs go without it
        print(f"matplotlib not installed (pip install -e '.[bench]'): {path.name} not drawn")
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(next(iter(results.values())))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), sharey=True)
    for ax, panel in zip(axes, panels, strict=True):
        kind = panel.split("/")[1]
        for name, curves in results.items():
            xs = [p[kind] for p in curves[panel]]
            ys = [100 * p["accuracy"] for p in curves[panel]]
            err = [100 * p["ci95"] for p in curves[panel]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=name)
        ax.axhline(20, color="grey", linestyle=":", linewidth=1)
        ax.set_title(panel.replace("/", ": "))
        ax.set_xlabel("shear factor" if kind == "shear" else "scale (1 = as trained)")
        if kind == "scale":
            ax.invert_xaxis()
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("5-way 1-shot accuracy (%)")
    axes[-1].legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def degradation(curves: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    """Accuracy at the strongest transform minus accuracy untransformed, per panel (points)."""
    out = {}
    for panel, points in curves.items():
        out[panel] = round(100 * (points[-1]["accuracy"] - points[0]["accuracy"]), 1)
    return out


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--long", action="store_true")
    p.add_argument("--learners", default="maml,protonet,mann,attention")
    p.add_argument("--models", default=None, help="folder of saved thetas: loaded when there, else written")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--meta-batch", type=int, default=8)
    p.add_argument("--k-query", type=int, default=3)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--eval-episodes", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="")
    args = p.parse_args()
    if args.smoke:
        args.steps, args.eval_episodes, args.channels, args.tag = 2, 3, 8, args.tag or "-smoke"
    if args.long:
        args.steps, args.channels, args.eval_episodes = 10 * args.steps, 64, 300
    return args


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    args = parse_args()
    wall = time.perf_counter()
    data = load_omniglot(OMNIGLOT, CACHE)
    splits = split_characters(data, by="alphabet", seed=args.seed)
    train_tasks = OmniglotTasks(data, splits, 5, 1, args.k_query)
    images, labels = load_mnist(MNIST)
    families: dict[str, TaskFamily] = {
        "omniglot held-out": train_tasks,  # its "test" split: characters of unseen alphabets
        "mnist": MnistTasks.meta_test_family(images, labels, n_way=5, k_shot=1, k_query=args.k_query),
    }
    names = [n for n in args.learners.split(",") if algorithm_of(n) in LEARNERS]
    missing = [n for n in args.learners.split(",") if algorithm_of(n) not in LEARNERS]
    results = {}
    for name in names:
        results[name] = sweep(trained_learner(name, train_tasks, args), families, args)
        log.info("%s: %s", name, degradation(results[name]))
    seconds = round(time.perf_counter() - wall, 1)
    command = " ".join(["python", "benchmarks/ood.py", *sys.argv[1:]])
    drops = {name: degradation(curves) for name, curves in results.items()}
    out = {"command": command, "wall_s": seconds, "device": "cpu, 1 thread", "shears": SHEARS, "scales": SCALES,
           "budget": {k: getattr(args, k) for k in ("steps", "meta_batch", "k_query", "channels", "eval_episodes", "seed")},
           "missing_learners": missing, "accuracy": results, "drop_at_strongest_points": drops}
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"ood{args.tag}"
    stem.with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
    plot(results, stem.with_suffix(".png"), f"{command} ({seconds} s)")
    md = ["# Out of distribution: Omniglot-trained 5-way 1-shot learners on sheared / scaled tasks\n",
          f"`{command}`, wall {seconds} s, cpu 1 thread; budget {out['budget']}\n",
          "| learner | " + " | ".join(f"{panel} ({', '.join(str(p[panel.split('/')[1]]) for p in pts)})"
                                     for panel, pts in next(iter(results.values())).items()) + " |",
          "|---" * (1 + len(next(iter(results.values())))) + "|"]
    for name, curves in results.items():
        cells = [" / ".join(f"{100 * p['accuracy']:.1f}" for p in pts) for pts in curves.values()]
        md.append(f"| {name} | " + " | ".join(cells) + " |")
    md.append("\nChange in accuracy (points) from untransformed to the strongest transform:\n")
    md.append("| learner | " + " | ".join(next(iter(drops.values()))) + " |")
    md.append("|---" * (1 + len(next(iter(drops.values())))) + "|")
    for name, d in drops.items():
        md.append(f"| {name} | " + " | ".join(f"{v:+.1f}" for v in d.values()) + " |")
    if missing:
        md.append(f"\nNot registered when run: {', '.join(missing)}")
    stem.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
