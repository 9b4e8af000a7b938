"""Turning image files into model inputs: the one path used by training data and the API."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from models.episodes import ImageFormat


def image_to_array(image: Image.Image, fmt: ImageFormat) -> np.ndarray:
    """Greyscale, resize to fmt.size, optionally invert; uint8 [size, size]."""
    grey = image.convert("L")
    if grey.size != (fmt.size, fmt.size):
        grey = grey.resize((fmt.size, fmt.size), Image.Resampling.LANCZOS)
    pixels = np.asarray(grey, dtype=np.uint8)
    return 255 - pixels if fmt.invert else pixels


def decode_image(data: bytes, fmt: ImageFormat) -> np.ndarray:
    """PNG or JPEG bytes to a float32 array [1, size, size] in [0, 1].

    Raises ValueError when the bytes are not an image PIL can read.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            pixels = image_to_array(image, fmt)
    except (OSError, Image.DecompressionBombError, SyntaxError) as exc:
        raise ValueError(f"not a readable PNG or JPEG image ({exc})") from exc
    return (pixels.astype(np.float32) / 255.0)[None]


def encode_png(pixels: np.ndarray) -> bytes:
    """A float [1, H, W] or [H, W] array in [0, 1] (model space) as PNG bytes, uninverted."""
    arr = np.asarray(pixels).reshape(pixels.shape[-2], pixels.shape[-1])
    grey = np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(grey, mode="L").save(buf, format="PNG")
    return buf.getvalue()
