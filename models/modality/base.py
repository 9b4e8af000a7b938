"""What a modality is: the one place that knows how an input of its kind is decoded, read from
an upload, normalised, embedded by a backbone and described to the public API."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from torch import Tensor, nn

MAX_EXAMPLES = 1_000_000  # examples of one uploaded dataset
FLOAT32_MAX = float(np.finfo(np.float32).max)  # past it a value is inf in the models


class InputError(ValueError):
    """One JSON input that cannot be decoded; `code` is the API's error code, `param` the item."""

    def __init__(self, message: str, param: str, code: str) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


class UploadError(ValueError):
    """An uploaded dataset that cannot be used; the message says what to fix."""


@dataclass
class DecodeContext:
    """What decoding one request's inputs may cost and what it converted on the way.

    `take_pixels(width, height, param)` is called with each image's size, read from its header
    before any pixel is decoded (the caller raises past its budget); `conversions` collects one
    sentence per converted input (e.g. a colour image given to a greyscale model)."""

    max_image_pixels: int
    take_pixels: Callable[[int, int, str], None] = lambda w, h, p: None
    conversions: list[str] = field(default_factory=list)


class Modality(ABC):
    """The kind of input a model takes: `image` (channels, size) or `vector` (features)."""

    name: ClassVar[str]

    @property
    @abstractmethod
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input tensor."""

    @property
    def features(self) -> int:
        """The size of one input flattened (the input of fully connected networks)."""
        return math.prod(self.input_shape)

    @abstractmethod
    def parameters(self) -> dict[str, Any]:
        """The public description's parameters (channels and size; features)."""

    def to_json(self) -> dict[str, Any]:
        """Stored in a ProblemSpec; `from_json` of the registry reads it back."""
        return {"name": self.name, **self.parameters()}

    def public(self) -> dict[str, Any]:
        """`modality` and `modality_params` of the public model and dataset objects."""
        return {"modality": self.name, "modality_params": self.parameters()}

    # Inputs sent as JSON.

    def json_numbers(self, value: Any) -> int:
        """How many numbers `value` holds, counted against a request's budget before decoding."""
        return self.features

    def decode_json(self, value: Any, param: str, context: DecodeContext) -> np.ndarray:
        """One input sent as JSON (a nested list of numbers) as float32 [*input_shape]; raises InputError."""
        return decode_numbers(value, self.input_shape, param, "a nested list of numbers")

    # The networks of the learners.

    @abstractmethod
    def backbone(self, out_dim: int, hidden: list[int], channels: int, running_stats: bool = False) -> nn.Module:
        """The network of MAML, ProtoNet and fine-tuning, its output layer named `head`."""

    @abstractmethod
    def support_encoder(self, hidden: list[int], channels: int) -> nn.Module:
        """The black-box learners' embedding: x [T, S, *input_shape] (and stored statistics) ->
        ([T, S, D], statistics used); `embedding_dim` is D."""

    def as_vector(self, x: Tensor) -> Tensor:
        """Inputs [B, *input_shape] as the [B, features] rows of fully connected networks (multi-task)."""
        return x.flatten(1)


def decode_numbers(value: Any, shape: tuple[int, ...], param: str, expected: str) -> np.ndarray:
    """A nested list of numbers (a bare number for shape (1,)) as float32 of `shape`; raises InputError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, list)):
        raise InputError(f"{param} must be {expected}", param, "invalid_input_type")
    if shape == (1,) and isinstance(value, (int, float)):
        value = [value]
    if isinstance(value, list) and shape and len(value) != shape[0]:  # before converting a list of any size
        raise InputError(f"{param} has {len(value)} items at its first level, the model takes shape {list(shape)}",
                         param, "invalid_input_shape")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except OverflowError:
        raise out_of_range(param) from None
    except (ValueError, TypeError):
        raise InputError(f"{param} is not a rectangular nested list of numbers", param, "invalid_input_type") from None
    if arr.dtype == object or arr.shape != shape:
        raise InputError(f"{param} has shape {list(arr.shape)}, the model takes {list(shape)}", param, "invalid_input_shape")
    if not np.isfinite(arr).all():
        raise InputError(f"{param} contains NaN or infinity", param, "non_finite_input")
    if arr.size and np.abs(arr).max() > FLOAT32_MAX:
        raise out_of_range(param)
    return arr.astype(np.float32)


def out_of_range(param: str) -> InputError:
    return InputError(
        f"{param} holds a value outside float32's finite range (|x| <= {FLOAT32_MAX:.8g}), which the models "
        "compute in; rescale the values", param, "out_of_range",
    )
