"""JSON inputs and labels to tensors, with errors that say which item is wrong and why.

Every request is held to budgets (store.settings): pixels per image and per request, read
from image headers before anything is decoded, and numbers per request. Values must be
finite in float32, the precision the models compute in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from models.episodes import ProblemSpec
from models.modality import DecodeContext, InputError
from models.modality.base import out_of_range
from service.errors import InvalidInput, PayloadTooLarge
from store.settings import Settings, get_settings

MAX_ITEMS = 10_000
FLOAT32_MAX = float(np.finfo(np.float32).max)  # 3.4028235e38: past it a value is inf in the models


@dataclass
class InputBudget:
    """What one request may cost to parse; `pixels_used` counts the images decoded so far."""

    image_pixels: int
    request_pixels: int
    request_numbers: int
    pixels_used: int = field(default=0)

    @classmethod
    def from_settings(cls, settings: Settings) -> InputBudget:
        return cls(settings.max_image_pixels, settings.max_request_pixels, settings.max_request_numbers)

    def take_pixels(self, width: int, height: int, param: str) -> None:
        self.pixels_used += width * height
        if self.pixels_used > self.request_pixels:
            raise PayloadTooLarge(
                f"{param}: the request's images hold more than {self.request_pixels} pixels in all, the most "
                "decoded per request (setting FEWSHOT_MAX_REQUEST_PIXELS); send fewer or smaller images",
                param=param, code="too_many_pixels",
            )


def parse_inputs(
    values: list[Any], spec: ProblemSpec, param: str, budget: InputBudget | None = None, conversions: list[str] | None = None,
) -> torch.Tensor:
    """A batch [n, *input_shape] float32, each item decoded by the spec's modality (nested lists of
    numbers; base64 PNG/JPEG files for images). `conversions` (when given) collects what was
    converted on the way, e.g. a colour image given to a greyscale model.

    `budget` defaults to the process settings' (one per request: it counts the pixels decoded).
    """
    if not values:
        raise InvalidInput(f"{param} must not be empty", param=param, code="empty_inputs")
    if len(values) > MAX_ITEMS:
        raise InvalidInput(f"{param} has {len(values)} items, at most {MAX_ITEMS} are taken", param=param)
    budget = budget or InputBudget.from_settings(get_settings())
    modality = spec.modality
    numbers = sum(modality.json_numbers(v) for v in values)
    if numbers > budget.request_numbers:
        raise PayloadTooLarge(
            f"{param} holds {numbers} numbers; at most {budget.request_numbers} are taken per request "
            "(setting FEWSHOT_MAX_REQUEST_NUMBERS): split the inputs over several requests",
            param=param, code="too_many_numbers",
        )
    context = DecodeContext(budget.image_pixels, budget.take_pixels)
    try:
        rows = [modality.decode_json(v, f"{param}[{i}]", context) for i, v in enumerate(values)]
    except InputError as exc:
        raise InvalidInput(str(exc), param=exc.param, code=exc.code) from None
    if conversions is not None:
        conversions.extend(context.conversions)
    return torch.from_numpy(np.stack(rows))


def check_finite_outputs(outputs: torch.Tensor, param: str) -> None:
    """A 422 naming the first input whose model output is inf or NaN: JSON has neither, never answer null."""
    bad = ~torch.isfinite(outputs).reshape(len(outputs), -1).all(dim=1)
    if bad.any():
        first = int(bad.nonzero()[0])
        raise InvalidInput(
            f"the model's output for {param}[{first}] is not a finite number: the inputs, or this task's support "
            "set, are outside what the model handles; rescale them", param=f"{param}[{first}]", code="non_finite_prediction",
        )


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
    if len(vocabulary) > spec.class_limit:
        how = (f"adapts to at most {spec.class_limit} (its max_classes)" if spec.max_classes > spec.n_way
               else f"was meta-trained {spec.n_way}-way and adapts to at most {spec.class_limit} (its max_classes)")
        raise InvalidInput(
            f"the support set has {len(vocabulary)} classes; this model {how}", param=param, code="too_many_classes",
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
        try:
            finite = all(math.isfinite(v) for v in row)
            in_range = all(abs(v) <= FLOAT32_MAX for v in row)
        except OverflowError:  # an integer too large for a float
            finite, in_range = True, False
        if not finite:
            raise InvalidInput(f"{param}[{i}] contains NaN or infinity", param=f"{param}[{i}]", code="non_finite_label")
        if not in_range:
            exc = out_of_range(f"{param}[{i}]")
            raise InvalidInput(str(exc), param=exc.param, code=exc.code)
        rows.append(row)
    if scalar and spec.output_dim != 1:
        raise InvalidInput(f"{param} must hold lists of {spec.output_dim} numbers", param=param, code="invalid_label")
    return ParsedLabels(torch.tensor(rows, dtype=torch.float32), None, scalar=scalar)
