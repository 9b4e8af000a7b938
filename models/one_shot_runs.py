"""Lake et al.'s one-shot classification benchmark format: reading runs, scoring a learner, and
building runs in that format from any Omniglot archive.

A folder holds `runNN/` folders, each with `training/classKK.png` (one drawing of each of 20
characters of one alphabet), `test/itemMM.png` (another drawer's drawing of each) and
`class_labels.txt`, one line per test item: `runNN/test/itemMM.png runNN/training/classKK.png`.
"""

from __future__ import annotations

import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.episodes import ImageFormat
from models.images import decode_image
from models.learners.base import AdaptOptions, Learner
from models.modality import ImageModality
from models.omniglot import find_archives


@dataclass(frozen=True)
class OneShotRun:
    name: str  # "run01"
    training: list[Path]  # one image per class, class i = training[i]
    test: list[Path]
    answers: list[int]  # the class index of each test image


def read_runs(root: Path) -> list[OneShotRun]:
    """Every runNN/ under root, parsed from its class_labels.txt; raises with what is missing."""
    run_dirs = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("run")) if root.is_dir() else []
    if not run_dirs:
        raise FileNotFoundError(f"no runNN/ folders in {root}: expected Lake et al.'s one-shot runs layout")
    runs = []
    for run_dir in run_dirs:
        labels_file = run_dir / "class_labels.txt"
        if not labels_file.exists():
            raise FileNotFoundError(f"{labels_file} is missing")
        pairs = [line.split() for line in labels_file.read_text().splitlines() if line.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError(f"{labels_file}: every line must be '<test image> <training image>'")
        training = sorted({train for _, train in pairs})
        index = {name: i for i, name in enumerate(training)}
        runs.append(
            OneShotRun(
                name=run_dir.name,
                training=[root / t for t in training],
                test=[root / test for test, _ in pairs],
                answers=[index[train] for _, train in pairs],
            )
        )
    return runs


def load_images(paths: list[Path], fmt: ImageFormat) -> torch.Tensor:
    """Image files to a model input batch [n, 1, size, size], the way the API decodes them."""
    return torch.from_numpy(np.stack([decode_image(p.read_bytes(), fmt) for p in paths]))


def run_error(learner: Learner, run: OneShotRun, options: AdaptOptions | None = None) -> float:
    """Adapt to the run's training images (one class each), classify its test images; error rate."""
    modality = learner.spec.modality
    if not isinstance(modality, ImageModality):
        raise ValueError(f"one-shot runs are images; this model takes {modality.name} inputs")
    fmt = modality.format
    if len(run.training) > learner.max_classes:
        raise ValueError(
            f"{run.name} has {len(run.training)} classes but the model takes at most {learner.max_classes}: "
            f"meta-train it with n_way >= {len(run.training)}"
        )
    support_x = load_images(run.training, fmt)
    phi = learner.adapt(support_x, torch.arange(len(run.training)), options)
    predicted = learner.predict(phi, load_images(run.test, fmt)).argmax(dim=-1)
    return float((predicted != torch.tensor(run.answers)).float().mean())


def build_runs(
    omniglot_dir: Path, out: Path, alphabets: list[str], n_runs: int = 20, ways: int = 20, seed: int = 0
) -> list[Path]:
    """Write n_runs runs in Lake et al.'s format from the original PNGs of the named alphabets
    (cycled): `ways` characters of one alphabet each, the training and test drawings by two
    different drawers. Returns the run folders."""
    drawings = _drawings(omniglot_dir, set(alphabets))
    rng = np.random.default_rng(seed)
    written = []
    for r in range(n_runs):
        alphabet = alphabets[r % len(alphabets)]
        chars = sorted(c for c in drawings if c.startswith(alphabet + "/"))
        if len(chars) < ways:
            raise ValueError(f"alphabet {alphabet} has {len(chars)} characters, fewer than {ways}")
        picked = [chars[i] for i in rng.permutation(len(chars))[:ways]]
        drawer_train, drawer_test = (int(d) for d in rng.permutation(20)[:2])
        run = out / f"run{r + 1:02d}"
        (run / "training").mkdir(parents=True, exist_ok=True)
        (run / "test").mkdir(parents=True, exist_ok=True)
        lines = []
        for k, char in enumerate(picked):
            files = drawings[char]
            (run / "training" / f"class{k + 1:02d}.png").write_bytes(files[drawer_train])
            (run / "test" / f"item{k + 1:02d}.png").write_bytes(files[drawer_test])
        order = rng.permutation(ways)  # test items listed in a shuffled order, as in the original
        for k in order:
            lines.append(f"{run.name}/test/item{k + 1:02d}.png {run.name}/training/class{k + 1:02d}.png")
        (run / "class_labels.txt").write_text("\n".join(lines) + "\n")
        written.append(run)
    return written


def _drawings(omniglot_dir: Path, alphabets: set[str]) -> dict[str, list[bytes]]:
    """'<Alphabet>/<character>' -> its 20 PNG files' bytes, in file-name order."""
    found: dict[str, dict[str, bytes]] = defaultdict(dict)
    for src in find_archives(omniglot_dir):
        if src.suffix == ".zip":
            with zipfile.ZipFile(src) as archive:
                for name in archive.namelist():
                    parts = name.split("/")
                    if name.endswith(".png") and len(parts) >= 3 and parts[-3] in alphabets:
                        found[f"{parts[-3]}/{parts[-2]}"].setdefault(parts[-1], archive.read(name))
        else:
            for path in src.rglob("*.png"):
                if path.parent.parent.name in alphabets:
                    found[f"{path.parent.parent.name}/{path.parent.name}"].setdefault(path.name, path.read_bytes())
    missing = alphabets - {c.split("/")[0] for c in found}
    if missing:
        raise ValueError(f"alphabets not found in {omniglot_dir}: {', '.join(sorted(missing))}")
    return {c: [files[f] for f in sorted(files)] for c, files in found.items() if len(files) == 20}
