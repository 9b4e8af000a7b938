"""Inputs as the API takes them: nested lists of numbers, or images as base64 PNG/JPEG strings.

Accepted: nested lists (or tuples) of numbers, numpy arrays (a batch along the first axis),
PIL images, image file paths (str or pathlib.Path), and base64 strings already encoded.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

SENT_AS_IS = (".png", ".jpg", ".jpeg")  # the API decodes these; other image files go as PNG (needs Pillow)


@runtime_checkable
class ArrayLike(Protocol):
    """numpy arrays and anything else with tolist() and a shape."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def tolist(self) -> Any: ...


@runtime_checkable
class ImageLike(Protocol):
    """PIL images: anything with save(fp, format=...) and a mode."""

    @property
    def mode(self) -> str: ...

    def save(self, fp: Any, format: str | None = None) -> None: ...  # noqa: A002 - PIL's own name


Input = ArrayLike | ImageLike | str | os.PathLike[str] | Sequence[Any] | float | int
Inputs = ArrayLike | Sequence[Input]


def encode_inputs(inputs: Inputs) -> list[Any]:
    """A JSON list, one item per input."""
    if isinstance(inputs, ArrayLike):
        encoded = inputs.tolist()
        if not isinstance(encoded, list):
            raise TypeError("an array of inputs needs a batch axis: shape (n, *input_shape)")
        return encoded
    if isinstance(inputs, (str, bytes, os.PathLike)) or isinstance(inputs, ImageLike):
        raise TypeError("inputs is a list of inputs: wrap a single image or path in a list")
    return [encode_input(item) for item in inputs]


def encode_input(item: Any) -> Any:
    """One input: images and image files become base64 strings, arrays nested lists."""
    if isinstance(item, ImageLike) and not isinstance(item, ArrayLike):
        return _image_b64(item)
    if isinstance(item, ArrayLike):
        return item.tolist()
    if isinstance(item, os.PathLike) or (isinstance(item, str) and _is_file(item)):
        return _file_b64(Path(item))
    if isinstance(item, (list, tuple)):
        return [encode_input(x) for x in item]
    if isinstance(item, (str, int, float)):
        return item  # a number, or an image already base64-encoded
    if hasattr(item, "item"):  # a numpy scalar
        return item.item()
    raise TypeError(f"cannot send an input of type {type(item).__name__}: give numbers, arrays, images or image paths")


def float32_body(inputs: Inputs) -> bytes:
    """The inputs as one raw application/octet-stream body: float32, little-endian, one input after
    another (the server splits the body by its model's input shape). Needs numpy."""
    if isinstance(inputs, (str, bytes, os.PathLike)) or isinstance(inputs, ImageLike):
        raise TypeError("binary inputs are numbers: give an array or nested lists of shape (n, *input_shape)")
    try:
        import numpy as np
    except ImportError as exc:  # pragma: no cover - the `arrays` extra
        raise ImportError("binary=True needs numpy: pip install 'fewshot-client[arrays]'") from exc
    try:
        array = np.asarray(inputs, dtype="<f4")  # an array is converted in place of a round trip through lists
    except (TypeError, ValueError) as exc:  # strings (image paths, base64), ragged lists
        raise TypeError(f"binary inputs are numbers of one shape (n, *input_shape): {exc}") from None
    if array.ndim < 2:
        raise TypeError("binary inputs need a batch axis: shape (n, *input_shape)")
    return array.tobytes()


def _is_file(text: str) -> bool:
    # a base64 PNG is long and has no path separator; a path is short enough for the file system
    return len(text) < 4096 and os.path.isfile(text)


def _file_b64(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"input image {path} does not exist")
    if path.suffix.lower() in SENT_AS_IS:
        return base64.b64encode(path.read_bytes()).decode("ascii")
    from PIL import Image  # other formats (bmp, gif, tiff, webp): re-encoded as PNG

    with Image.open(path) as image:
        return _image_b64(image)


def _image_b64(image: ImageLike) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
