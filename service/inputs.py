"""JSON inputs and labels to tensors, with errors that say which item is wrong and why."""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from models.episodes import ProblemSpec
from models.images import decode_image
from service.errors import InvalidInput

MAX_ITEMS = 10_000


def parse_inputs(values: list[Any], spec: ProblemSpec, param: str) -> torch.Tensor:
    """A batch [n, *input_shape] float32 from numeric nested lists or base64 images."""
    if not values:
        raise InvalidInput(f"{param} must not be empty", param=param, code="empty_inputs")
    if len(values) > MAX_ITEMS:
        raise InvalidInput(f"{param} has {len(values)} items, at most {MAX_ITEMS} are taken", param=param)
    rows = [_parse_one(v, spec, f"{param}[{i}]") for i, v in enumerate(values)]
    return torch.from_numpy(np.stack(rows))


def _parse_one(value: Any, spec: ProblemSpec, param: str) -> np.ndarray:
    shape = tuple(spec.input_shape)
    if isinstance(value, str):
        if spec.image is None:
            raise InvalidInput(f"{param}: this model takes numeric inputs of shape {list(shape)}, not images", param=param, code="invalid_input_type")
        data = _b64decode(value, param)
        try:
            pixels = decode_image(data, spec.image)  # [1, size, size]
        except ValueError as exc:
            raise InvalidInput(f"{param}: {exc}", param=param, code="invalid_image") from None
        if pixels.shape != shape:
            pixels = np.broadcast_to(pixels, shape).copy() if pixels.shape[1:] == shape[1:] else pixels
        return pixels
    if isinstance(value, bool) or not isinstance(value, (int, float, list)):
        raise InvalidInput(f"{param} must be a nested list of numbers{' or a base64 image' if spec.image else ''}", param=param, code="invalid_input_type")
    if shape == (1,) and isinstance(value, (int, float)):
        value = [value]
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        raise InvalidInput(f"{param} is not a rectangular nested list of numbers", param=param, code="invalid_input_type") from None
    if arr.dtype == object or arr.shape != shape:
        raise InvalidInput(f"{param} has shape {list(arr.shape)}, the model takes {list(shape)}", param=param, code="invalid_input_shape")
    if not np.isfinite(arr).all():
        raise InvalidInput(f"{param} contains NaN or infinity", param=param, code="non_finite_input")
    return arr.astype(np.float32)


def _b64decode(value: str, param: str) -> bytes:
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{param} is not valid base64", param=param, code="invalid_base64") from None


@dataclass(frozen=True)
class ParsedLabels:
    targets: torch.Tensor  # class indices [n] (int64) or regression targets [n, output_dim]
    vocabulary: list[Any] | None  # classification: labels in the order of their index
    scalar: bool  # regression targets given as numbers rather than lists


def parse_labels(labels: list[Any], n_inputs: int, spec: ProblemSpec) -> ParsedLabels:
    param = "support.labels"
    if len(labels) != n_inputs:
        raise InvalidInput(f"{param} has {len(labels)} items but support.inputs has {n_inputs}", param=param, code="length_mismatch")
    if spec.output == "classification":
        return _class_labels(labels, spec, param)
    return _targets(labels, spec, param)


def _class_labels(labels: list[Any], spec: ProblemSpec, param: str) -> ParsedLabels:
    vocabulary: list[Any] = []
    index: dict[tuple[str, Any], int] = {}
    targets = []
    for i, label in enumerate(labels):
        if isinstance(label, bool) or not isinstance(label, (str, int)):
            raise InvalidInput(f"{param}[{i}] must be a string or an integer", param=f"{param}[{i}]", code="invalid_label")
        key = (type(label).__name__, label)
        if key not in index:
            index[key] = len(vocabulary)
            vocabulary.append(label)
        targets.append(index[key])
    if len(vocabulary) > spec.n_way:
        raise InvalidInput(
            f"the support set has {len(vocabulary)} classes; this model was meta-trained for at most {spec.n_way}",
            param=param, code="too_many_classes",
        )
    return ParsedLabels(torch.tensor(targets, dtype=torch.int64), vocabulary, scalar=False)


def _targets(labels: list[Any], spec: ProblemSpec, param: str) -> ParsedLabels:
    scalar = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in labels)
    rows = []
    for i, value in enumerate(labels):
        row = [value] if scalar else value
        if not isinstance(row, list) or len(row) != spec.output_dim or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in row
        ):
            raise InvalidInput(
                f"{param}[{i}] must be a number or a list of {spec.output_dim} numbers", param=f"{param}[{i}]", code="invalid_label"
            )
        if not all(math.isfinite(v) for v in row):
            raise InvalidInput(f"{param}[{i}] contains NaN or infinity", param=f"{param}[{i}]", code="non_finite_label")
        rows.append(row)
    if scalar and spec.output_dim != 1:
        raise InvalidInput(f"{param} must hold lists of {spec.output_dim} numbers", param=param, code="invalid_label")
    return ParsedLabels(torch.tensor(rows, dtype=torch.float32), None, scalar=scalar)
