"""N-way K-shot tasks on real tabular data: our learners against what a practitioner fits.

scikit-learn's bundled tables: digits (64 pixel features, 10 classes), wine (13 features, 3
classes) and breast cancer (30 features, 2 classes). Digits has classes enough to hold some out:
the learners meta-train on 5 digits and are scored on 5-way tasks of the other 5. Wine and breast
cancer have too few classes to hold any out, so their tasks go across datasets: each table's
features are put on a common scale (its own per-feature mean and deviation, no labels used) and
padded with zeros to 30 columns; a model meta-trains on one table's classes and is scored on
2-way tasks of the other's.

Our learners train in-process through the models API (ProblemSpec with a vector modality that
standardises with the meta-training classes' statistics, build_learner, meta_train), with small
budgets. The baselines see exactly the same support and query sets and fit on the support set
alone: nearest centroid, k-NN (k = 1 for 1-shot, else 3) and logistic regression, each after a
StandardScaler fitted on the support set. One run; mean accuracy with its 95% confidence
interval over the test episodes.

    python benchmarks/tabular.py --smoke   # seconds: does it run
    python benchmarks/tabular.py           # the figures of benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import logging
import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from reporting import setup, write_results
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier, NearestCentroid
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from models.episodes import Episode, ProblemSpec, Split, SupervisedBatch
from models.learners import build_learner
from models.modality import VectorModality
from models.recipe import resolve
from models.training import TEST_SEED_OFFSET, meta_train

LEARNERS = ["protonet", "maml", "finetune"]
LEARNER_CONFIG: dict[str, dict[str, Any]] = {
    "protonet": {"hidden": [64, 64]},
    "maml": {"hidden": [64, 64], "inner_steps": 1, "adapt_steps": 5, "inner_lr": 0.1},
    "finetune": {"hidden": [64, 64]},
}
BASELINES = {
    "nearest centroid": lambda k: NearestCentroid(),
    "k-NN": lambda k: KNeighborsClassifier(n_neighbors=1 if k == 1 else 3),
    "logistic regression": lambda k: LogisticRegression(max_iter=1000),
}


@dataclass
class ClassPool:
    """N-way K-shot episodes drawn from fixed train and test classes (a TaskFamily)."""

    train: list[np.ndarray]  # one [n_c, features] array per class
    test: list[np.ndarray]
    n_way: int
    k_shot: int
    k_query: int

    @property
    def spec(self) -> ProblemSpec:
        features = self.train[0].shape[1]
        modality = VectorModality((features,)).fitted(torch.from_numpy(np.concatenate(self.train)).float())
        return ProblemSpec.of(modality, "classification", n_way=self.n_way)

    def sample(self, split: Split, n_tasks: int, generator: torch.Generator) -> list[Episode]:
        classes = self.test if split == "test" else self.train
        return [self._episode(classes, generator) for _ in range(n_tasks)]

    def split_names(self) -> None:
        return None

    def supervised_batch(self, size: int, generator: torch.Generator) -> SupervisedBatch:
        """Examples of the train classes with their class ids (the fine-tuning baseline pretrains on them)."""
        x = np.concatenate(self.train)
        y = np.concatenate([np.full(len(c), i) for i, c in enumerate(self.train)])
        rows = torch.randint(len(x), (size,), generator=generator).numpy()
        return SupervisedBatch(torch.from_numpy(x[rows]).float(), torch.from_numpy(y[rows]).long(), len(self.train))

    def _episode(self, classes: list[np.ndarray], generator: torch.Generator) -> Episode:
        picked = torch.randperm(len(classes), generator=generator)[: self.n_way].tolist()
        support, query = [], []
        for c in picked:
            rows = torch.randperm(len(classes[c]), generator=generator)[: self.k_shot + self.k_query].numpy()
            support.append(classes[c][rows[: self.k_shot]])
            query.append(classes[c][rows[self.k_shot :]])
        labels = torch.arange(self.n_way)
        return Episode(torch.from_numpy(np.concatenate(support)).float(), labels.repeat_interleave(self.k_shot),
                       torch.from_numpy(np.concatenate(query)).float(), labels.repeat_interleave(self.k_query))


def by_class(x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    return [x[y == c] for c in np.unique(y)]


def common_scale(x: np.ndarray, width: int = 30) -> np.ndarray:
    """A table's features on its own per-feature scale (no labels used), zero-padded to `width` columns."""
    z = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)
    return np.pad(z, ((0, 0), (0, width - x.shape[1])))


def problems(args: argparse.Namespace) -> list[tuple[str, ClassPool]]:
    digits = load_digits()
    rng = np.random.default_rng(0)
    order = rng.permutation(10)
    classes = by_class(digits.data, digits.target)
    out = [(f"digits {args.ways}-way {k}-shot (held-out digits {sorted(order[5:].tolist())})",
            ClassPool([classes[c] for c in order[:5]], [classes[c] for c in order[5:]], args.ways, k, args.queries))
           for k in args.shots]
    wine, cancer = load_wine(), load_breast_cancer()
    wine_classes = by_class(common_scale(wine.data), wine.target)
    cancer_classes = by_class(common_scale(cancer.data), cancer.target)
    for k in args.shots:
        out.append((f"breast cancer 2-way {k}-shot (meta-trained on wine)", ClassPool(wine_classes, cancer_classes, 2, k, args.queries)))
        out.append((f"wine 2-way {k}-shot (meta-trained on breast cancer)", ClassPool(cancer_classes, wine_classes, 2, k, args.queries)))
    return out


def mean_ci(values: list[float]) -> dict[str, float]:
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)
    return {"accuracy": round(100 * mean, 2), "ci95": round(100 * 1.96 * math.sqrt(var / len(values)), 2)}


def run_problem(name: str, pool: ClassPool, args: argparse.Namespace) -> dict[str, Any]:
    episodes = pool.sample("test", args.episodes, torch.Generator().manual_seed(TEST_SEED_OFFSET))
    scores: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    for algorithm in args.learners:
        config = {"n_way": pool.n_way, "k_shot": pool.k_shot, "k_query": pool.k_query, "steps": args.steps,
                  "meta_batch_size": args.meta_batch, **LEARNER_CONFIG[algorithm]}
        recipe = resolve(algorithm, "ds_tabular", config)  # validated as for an uploaded dataset
        torch.manual_seed(0)
        learner = build_learner(algorithm, pool.spec, recipe.learner)
        t0 = time.time()
        meta_train(learner, pool, args.steps, args.meta_batch, seed=0)
        seconds[algorithm] = round(time.time() - t0, 1)
        scores[algorithm] = []
        for ep in episodes:
            out = learner.predict(learner.adapt(ep.support_x, ep.support_y), ep.query_x)
            scores[algorithm].append(float((out.argmax(-1) == ep.query_y).float().mean()))
    for baseline, make in BASELINES.items():
        scores[baseline] = []
        for ep in episodes:
            warnings.filterwarnings("ignore", category=RuntimeWarning)  # NearestCentroid's variance of 1-shot sets (unused)
            model = make_pipeline(StandardScaler(), make(pool.k_shot)).fit(ep.support_x.numpy(), ep.support_y.numpy())
            scores[baseline].append(float((model.predict(ep.query_x.numpy()) == ep.query_y.numpy()).mean()))
    return {"problem": name, "episodes": len(episodes), "train_seconds": seconds,
            "scores": {k: mean_ci(v) for k, v in scores.items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--learners", nargs="+", default=LEARNERS, choices=LEARNERS)
    p.add_argument("--ways", type=int, default=5)
    p.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    p.add_argument("--queries", type=int, default=10)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--meta-batch", type=int, default=8)
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--smoke", action="store_true", help="a few steps and episodes: checks that it runs")
    args = p.parse_args()
    if args.smoke:
        args.steps, args.episodes, args.shots = 3, 5, [1]
    setup(args.threads)
    logging.basicConfig(level=logging.WARNING)
    started = time.time()
    rows = []
    for name, pool in problems(args):
        rows.append(run_problem(name, pool, args))
        print(rows[-1], flush=True)
    wall = time.time() - started
    write_results("tabular", {"settings": vars(args), "rows": rows, "wall_seconds": round(wall)}, markdown(rows, args, wall))


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace, wall: float) -> str:
    columns = [*args.learners, *BASELINES]
    lines = [
        f"scikit-learn's digits, wine and breast cancer tables; {args.episodes} test episodes per row with "
        f"{args.queries} queries per class, the same episodes in every column (accuracy %, 95% CI). Our learners: "
        f"{args.steps} meta-training steps of {args.meta_batch} tasks, MLP [64, 64]; baselines fitted on each "
        f"support set after a StandardScaler fitted on it. Wall time {wall / 60:.1f} min.",
        "",
        "| task | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for r in rows:
        cells = [f"{r['scores'][c]['accuracy']:.1f} ± {r['scores'][c]['ci95']:.1f}" for c in columns]
        lines.append(f"| {r['problem']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
