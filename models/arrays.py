"""User datasets: an npz of arrays, a CSV table or a zip of class folders of images, validated,
as episodes. The modality of the inputs reads its own uploads (models.modality): images read
zips, vectors read CSV files.

An npz holds `x` [n, *input_shape] (numbers), `y` [n] (integer class ids: classification) or
[n] / [n, d] (floats: regression, one function per `task`), and optionally `task` [n]
(integers). A zip holds one folder of PNG/JPEG images per class (`<class>/<file>.png`,
optionally under one top folder). A CSV has a header row, numeric feature columns, a label
column and optionally a `task` column (then regression, as in an npz). All become `ArrayData`,
stored as one safetensors file whose metadata keeps what the arrays cannot (output kind,
modality, class names).
"""

from __future__ import annotations

import functools
import io
import json
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from torch import Tensor

from models.episodes import Episode, OutputKind, ProblemSpec, Split, SplitNames
from models.images import DEFAULT_MAX_PIXELS
from models.modality import Modality, UploadError, legacy_modality, modality_from_json
from models.modality.base import MAX_EXAMPLES
from models.modality.image import read_image_zip as read_image_folders
from models.modality.vector import VectorModality
from models.modality.vector import read_csv as read_csv_table
from models.splits import split_at_random

MIN_CLASSES = 6  # two-way tasks on disjoint train, val and test classes
MIN_PER_CLASS = 2  # one support and one query example
MIN_TASKS = 3  # regression: train, val and test functions
SPLIT_FRACTION = 0.2  # of classes (or tasks) for each of val and test


DatasetError = UploadError  # an upload that cannot be used; the message says what to fix


@dataclass(frozen=True)
class ArrayData:
    x: Tensor  # [n, *input_shape] float32
    y: Tensor  # [n] int64 class index, or [n, output_dim] float32 targets
    task: Tensor | None  # [n] int64, or None
    output: OutputKind
    modality: Modality = field(default=None)  # type: ignore[assignment]  # None: derived from x's shape
    class_names: list[str] = field(default_factory=list)  # classification: name of each index

    def __post_init__(self) -> None:
        if self.modality is None:
            object.__setattr__(self, "modality", legacy_modality(self.input_shape))

    @property
    def input_shape(self) -> list[int]:
        return list(self.x.shape[1:])

    def spec(self, n_way: int, train_rows: Tensor | None = None) -> ProblemSpec:
        """The problem of tasks drawn from these arrays (n_way classes per classification task);
        vector inputs are standardised with the statistics of x[train_rows] (meta-training)."""
        modality = self.modality
        if isinstance(modality, VectorModality) and train_rows is not None and len(train_rows):
            modality = modality.fitted(self.x[train_rows])
        if self.output == "classification":
            return ProblemSpec.of(modality, "classification", n_way=n_way)
        return ProblemSpec.of(modality, "regression", output_dim=int(self.y.shape[1]))

    def counts(self) -> list[int]:
        """Examples per class (classification) or per task (regression)."""
        groups = self.y if self.output == "classification" else self.task
        assert groups is not None
        return torch.bincount(groups).tolist()

    def summary(self) -> dict[str, Any]:
        counts = self.counts()
        out: dict[str, Any] = {"examples": len(self.x), "min_per_group": min(counts), "max_per_group": max(counts)}
        if self.output == "classification":
            out["classes"] = len(counts)
            out["class_names"] = self.class_names[:1000]
        else:
            out["output_dim"] = int(self.y.shape[1])
        if self.task is not None:
            out["tasks"] = int(self.task.max()) + 1
        return out

    def tensors(self) -> dict[str, Tensor]:
        out = {"x": self.x, "y": self.y}
        if self.task is not None:
            out["task"] = self.task
        return out

    def metadata(self) -> dict[str, str]:
        return {"output": self.output, "modality": json.dumps(self.modality.to_json()), "class_names": json.dumps(self.class_names)}


def load_array_file(path: str) -> ArrayData:
    """An ArrayData saved as safetensors with `metadata()` (the artifact store's format)."""
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iterator
    stored = json.loads(meta.get("modality", "null"))  # files written before modalities: image format and shape
    modality = modality_from_json(stored) if stored else legacy_modality(tensors["x"].shape[1:], json.loads(meta.get("image", "null")))
    return ArrayData(
        x=tensors["x"], y=tensors["y"], task=tensors.get("task"), output=meta["output"],  # type: ignore[arg-type]
        modality=modality, class_names=json.loads(meta.get("class_names", "[]")),
    )


def read_npz(data: bytes) -> ArrayData:
    """Validate an npz of `x`, `y` and optional `task`; raises DatasetError saying what is wrong."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(f"the file is not a readable .npz of numeric arrays ({exc})") from None
    unknown = sorted(set(arrays) - {"x", "y", "task"})
    if unknown or "x" not in arrays or "y" not in arrays:
        raise DatasetError(f"an npz dataset holds arrays x, y and optionally task; found {sorted(arrays)}")
    x, y, task = arrays["x"], arrays["y"], arrays.get("task")
    n = len(x) if x.ndim else 0
    if x.ndim < 2 or not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise DatasetError(f"x must be a numeric array [examples, *input_shape]; got dtype {x.dtype}, shape {list(x.shape)}")
    if not 1 <= n <= MAX_EXAMPLES:
        raise DatasetError(f"x has {n} examples; between 1 and {MAX_EXAMPLES} are accepted")
    if len(y) != n or (task is not None and task.shape != (n,)):
        raise DatasetError(f"y and task must have one entry per example of x ({n}); y has shape {list(y.shape)}")
    if not np.isfinite(x.astype(np.float64)).all():
        raise DatasetError("x contains NaN or infinity")
    return _labelled(x, y, task)


def _labelled(x: np.ndarray, y: np.ndarray, task: np.ndarray | None, modality: Modality | None = None) -> ArrayData:
    """ArrayData of validated inputs x and labels y (integers: classes; floats: targets with a task array)."""
    n = len(x)
    xt = torch.from_numpy(x.astype(np.float32))
    tt = _task_ids(task) if task is not None else None
    if np.issubdtype(y.dtype, np.integer):
        if y.ndim != 1:
            raise DatasetError(f"integer labels y must have shape [examples]; got {list(y.shape)}")
        values, index = np.unique(y, return_inverse=True)
        out = ArrayData(xt, torch.from_numpy(index.astype(np.int64)), tt, "classification", modality,
                        class_names=[str(v) for v in values.tolist()])
    elif np.issubdtype(y.dtype, np.floating):
        if y.ndim not in (1, 2) or not np.isfinite(y).all():
            raise DatasetError("float targets y must be finite, of shape [examples] or [examples, output_dim]")
        if tt is None:
            raise DatasetError("regression targets (float y) need a `task` array saying which function each example is from")
        yt = torch.from_numpy(y.astype(np.float32)).reshape(n, -1)
        out = ArrayData(xt, yt, tt, "regression", modality)
    else:
        raise DatasetError(f"y must hold integers (class labels) or floats (regression targets); got dtype {y.dtype}")
    check_counts(out)
    return out


def _task_ids(task: np.ndarray) -> Tensor:
    if not np.issubdtype(task.dtype, np.integer):
        raise DatasetError(f"task must hold integer task ids; got dtype {task.dtype}")
    _, index = np.unique(task, return_inverse=True)
    return torch.from_numpy(index.astype(np.int64))


def read_image_zip(data: bytes, size: int = 28, invert: bool = False, channels: int | None = None,
                   max_image_pixels: int = DEFAULT_MAX_PIXELS) -> ArrayData:
    """A zip of class folders of PNG/JPEG images, as [n, channels, size, size] pixels in [0, 1];
    channels None: detected (1 when every image is greyscale, else 3). See models.modality.image."""
    folders = read_image_folders(data, size, invert, channels, max_image_pixels)
    out = ArrayData(torch.from_numpy(folders.x), torch.tensor(folders.labels, dtype=torch.int64), None, "classification",
                    folders.modality, class_names=folders.class_names)
    check_counts(out)
    return out


def read_csv(data: bytes, label_column: str = "label") -> ArrayData:
    """A CSV table (models.modality.vector.read_csv): classification by its label column, or
    regression (numeric labels as targets) when it has a `task` column."""
    table = read_csv_table(data, label_column, MAX_EXAMPLES)
    modality = VectorModality((table.x.shape[1],))
    if table.task is None:
        values = sorted(set(table.labels), key=_label_order)
        index = {v: i for i, v in enumerate(values)}
        y = np.array([index[v] for v in table.labels], dtype=np.int64)
        out = ArrayData(torch.from_numpy(table.x.astype(np.float32)), torch.from_numpy(y), None, "classification",
                        modality, class_names=values)
        check_counts(out)
        return out
    targets = []
    for line, label in enumerate(table.labels, start=2):
        try:
            targets.append(float(label))
        except ValueError:
            raise DatasetError(f"row {line}, column {label_column!r}: {label[:40]!r} is not a number; with a task "
                               "column the labels are regression targets") from None
    y = np.array(targets, dtype=np.float64)
    if not np.isfinite(y).all():
        raise DatasetError(f"column {label_column!r} holds NaN or infinity; regression targets must be finite")
    return _labelled(table.x, y, table.task, modality)


def _label_order(label: str) -> tuple[int, float, str]:
    """Numeric labels in numeric order (2 before 10), then the others alphabetically."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def check_counts(data: ArrayData) -> None:
    counts = data.counts()
    if data.output == "classification":
        if len(counts) < MIN_CLASSES:
            raise DatasetError(
                f"the dataset has {len(counts)} classes; at least {MIN_CLASSES} are needed so that train, val "
                "and test tasks use disjoint classes"
            )
        small = [data.class_names[i] for i, c in enumerate(counts) if c < MIN_PER_CLASS]
        if small:
            raise DatasetError(f"classes {small[:5]} have fewer than {MIN_PER_CLASS} examples each; add examples or drop them")
    else:
        if len(counts) < MIN_TASKS:
            raise DatasetError(f"the dataset has {len(counts)} tasks; at least {MIN_TASKS} are needed (train, val, test)")
        if min(counts) < MIN_PER_CLASS:
            raise DatasetError(f"every task needs at least {MIN_PER_CLASS} examples (support and query)")


def task_names(n_tasks: int) -> list[str]:
    """Names of an npz's tasks: `task_<i>` for the i-th task id in sorted order."""
    return [f"task_{t}" for t in range(n_tasks)]


def split_groups(
    n_groups: int, n_way: int, seed: int, val_fraction: float = SPLIT_FRACTION, test_fraction: float = SPLIT_FRACTION,
    unit: str = "classes",
) -> dict[Split, list[int]]:
    """Disjoint train/val/test groups (classes, or regression tasks with n_way=1), drawn from the
    seed; raises SplitError naming the fraction to change."""
    return split_at_random(n_groups, val_fraction, test_fraction, seed, min_size=n_way, unit=unit)


def check_episodes(
    output: str, counts: list[int], n_way: int, k_shot: int, k_query: int, seed: int,
    val_fraction: float = SPLIT_FRACTION, test_fraction: float = SPLIT_FRACTION,
) -> None:
    """Whether episodes of this shape can be drawn; raises DatasetError (or SplitError) saying what to change."""
    classification = output == "classification"
    split_groups(len(counts), n_way if classification else 1, seed, val_fraction, test_fraction,
                 "classes" if classification else "tasks")
    need = k_shot + k_query
    if min(counts) < need:
        kind = "class" if classification else "task"
        raise DatasetError(
            f"the smallest {kind} has {min(counts)} examples, fewer than k_shot + k_query = {need}: lower k_shot or k_query"
        )


@dataclass
class ArrayTasks:
    """N-way K-shot episodes (classification) or K-shot functions (regression) over ArrayData."""

    data: ArrayData
    n_way: int = 5
    k_shot: int = 1
    k_query: int = 15
    seed: int = 0
    val_fraction: float = SPLIT_FRACTION
    test_fraction: float = SPLIT_FRACTION

    def __post_init__(self) -> None:
        counts = self.data.counts()
        check_episodes(self.data.output, counts, self.n_way, self.k_shot, self.k_query, self.seed,
                       self.val_fraction, self.test_fraction)
        classification = self.data.output == "classification"
        groups = self.data.y if classification else self.data.task
        assert groups is not None
        self.splits = split_groups(len(counts), self.n_way if classification else 1, self.seed,
                                   self.val_fraction, self.test_fraction, "classes" if classification else "tasks")
        self._members = [torch.nonzero(groups == g).flatten() for g in range(len(counts))]

    @functools.cached_property
    def spec(self) -> ProblemSpec:
        """Vector inputs standardised with the statistics of the meta-training classes' (or tasks') examples."""
        return self.data.spec(self.n_way, torch.cat([self._members[g] for g in self.splits["train"]]))

    def sample(self, split: Split, n_tasks: int, generator: torch.Generator) -> list[Episode]:
        if not self.splits[split]:
            raise ValueError(f"this dataset's split {split!r} is empty (its fraction is 0)")
        return [self._episode(self.splits[split], generator) for _ in range(n_tasks)]

    def split_names(self) -> SplitNames:
        """Classification: each split's class names (zip folder names, npz label values);
        regression: its tasks, `task_<i>` by the i-th task id in sorted order."""
        if self.data.output == "classification":
            return SplitNames.of("classes", self.splits, self.data.class_names)
        return SplitNames.of("tasks", self.splits, task_names(len(self.data.counts())))

    def _draw(self, group: int, generator: torch.Generator) -> Tensor:
        pool = self._members[group]
        return pool[torch.randperm(len(pool), generator=generator)[: self.k_shot + self.k_query]]

    def _episode(self, groups: list[int], generator: torch.Generator) -> Episode:
        x, y = self.data.x, self.data.y
        if self.data.output == "regression":
            chosen = self._draw(groups[int(torch.randint(len(groups), (), generator=generator))], generator)
            support, query = chosen[: self.k_shot], chosen[self.k_shot :]
            return Episode(x[support], y[support], x[query], y[query])  # [K, *shape], [K, d], [Q, *shape], [Q, d]
        picked = torch.randperm(len(groups), generator=generator)[: self.n_way].tolist()
        draws = [self._draw(groups[i], generator) for i in picked]
        support = torch.cat([d[: self.k_shot] for d in draws])  # [N*K]
        query = torch.cat([d[self.k_shot :] for d in draws])  # [N*Q]
        labels = torch.arange(self.n_way)
        return Episode(x[support], labels.repeat_interleave(self.k_shot), x[query], labels.repeat_interleave(self.k_query))
