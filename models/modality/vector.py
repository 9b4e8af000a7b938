"""Vectors: rows of numbers (tabular features, or any array shape), through an MLP.

Features are standardised inside the network with the mean and standard deviation of the
meta-training classes (or tasks), kept in the modality and so stored with the model: adaptation
and prediction take raw units. CSV uploads are read here: a header row, one numeric column per
feature, the label column, and an optional `task` column (regression, one function per task).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from models.modality.base import Modality, UploadError
from models.nets import MLP, Standardize, VectorEmbedding

MIN_STD = 1e-8  # a feature that (nearly) never varies in training is centred, not scaled


@dataclass(frozen=True)
class VectorModality(Modality):
    name: ClassVar[str] = "vector"
    shape: tuple[int, ...] = (1,)
    mean: tuple[float, ...] | None = None  # per feature, from the meta-training classes; None: not standardised
    std: tuple[float, ...] | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.shape)

    def parameters(self) -> dict[str, Any]:
        out: dict[str, Any] = {"features": self.features, "standardized": self.mean is not None}
        if len(self.shape) != 1:
            out["shape"] = list(self.shape)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "mean": _listed(self.mean), "std": _listed(self.std)}

    def fitted(self, x: Tensor) -> VectorModality:
        """This modality standardising with the statistics of `x` [n, *shape] (meta-training inputs)."""
        flat = x.reshape(len(x), -1).double()
        mean = flat.mean(0)
        std = flat.std(0, unbiased=False)
        std = torch.where(std > MIN_STD * torch.clamp(mean.abs(), min=1.0), std, torch.ones_like(std))
        return VectorModality(self.shape, tuple(mean.tolist()), tuple(std.tolist()))

    def standardize(self) -> nn.Module:
        if self.mean is None or self.std is None:
            return nn.Identity()
        return Standardize(torch.tensor(self.mean), torch.tensor(self.std))

    def backbone(self, out_dim: int, hidden: list[int], channels: int, running_stats: bool = False) -> nn.Module:
        return MLP(self.features, hidden, out_dim, standardize=self.standardize())

    def support_encoder(self, hidden: list[int], channels: int) -> nn.Module:
        return VectorEmbedding(self.features, hidden, standardize=self.standardize())

    def as_vector(self, x: Tensor) -> Tensor:
        flat = x.flatten(1)
        if self.mean is None or self.std is None:
            return flat
        mean = torch.tensor(self.mean, dtype=flat.dtype, device=flat.device)
        std = torch.tensor(self.std, dtype=flat.dtype, device=flat.device)
        return (flat - mean) / std


def _listed(values: tuple[float, ...] | None) -> list[float] | None:
    return None if values is None else list(values)


@dataclass(frozen=True)
class CsvTable:
    """A CSV's numbers: features x [n, features], the label column as text, the task column."""

    x: np.ndarray
    labels: list[str]
    task: np.ndarray | None
    feature_names: list[str]


def read_csv(data: bytes, label_column: str = "label", max_rows: int = 1_000_000) -> CsvTable:
    """A header row, then one row per example; every column but `label_column` and `task` is a
    numeric feature. Raises UploadError naming the row (1-based, the header is row 1) and column."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UploadError(f"the CSV is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    rows = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip() for h in next(rows, [])]
    if not header or header == [""]:
        raise UploadError("the CSV is empty: it needs a header row naming its columns, then one row per example")
    if len(set(header)) != len(header):
        dup = next(h for h in header if header.count(h) > 1)
        raise UploadError(f"the CSV's header names column {dup!r} twice; give every column its own name")
    if label_column not in header:
        raise UploadError(f"the CSV has no label column {label_column!r} (its columns: {', '.join(header[:20])}); "
                          "name it with the label_column field")
    label_at = header.index(label_column)
    task_at = header.index("task") if "task" in header and label_column != "task" else None
    feature_at = [i for i in range(len(header)) if i not in (label_at, task_at)]
    if not feature_at:
        raise UploadError("the CSV has no feature columns besides the label (and task) column")
    features: list[list[float]] = []
    labels: list[str] = []
    tasks: list[str] = []
    for line, row in enumerate(rows, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue  # blank lines
        if len(row) != len(header):
            raise UploadError(f"row {line} has {len(row)} cells, the header has {len(header)} columns")
        if len(features) >= max_rows:
            raise UploadError(f"the CSV has more than {max_rows} rows; at most {max_rows} are accepted")
        features.append([_number(row[i], line, header[i]) for i in feature_at])
        label = row[label_at].strip()
        if not label:
            raise UploadError(f"row {line}, column {label_column!r}: the label is missing")
        labels.append(label)
        if task_at is not None:
            task = row[task_at].strip()
            if not task:
                raise UploadError(f"row {line}, column 'task': the task is missing")
            tasks.append(task)
    if not features:
        raise UploadError("the CSV has a header but no rows of examples")
    task_ids = None
    if task_at is not None:
        _, index = np.unique(np.array(tasks), return_inverse=True)
        task_ids = index.astype(np.int64)
    return CsvTable(np.array(features, dtype=np.float64), labels, task_ids, [header[i] for i in feature_at])


def _number(cell: str, line: int, column: str) -> float:
    text = cell.strip()
    if not text:
        raise UploadError(f"row {line}, column {column!r}: the cell is empty; every feature needs a number")
    try:
        value = float(text)
    except ValueError:
        raise UploadError(f"row {line}, column {column!r}: {text[:40]!r} is not a number") from None
    if not math.isfinite(value) or abs(value) > 3.4028234663852886e38:
        raise UploadError(f"row {line}, column {column!r}: {text[:40]!r} is not a finite float32 number")
    return value
