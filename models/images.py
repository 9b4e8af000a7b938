"""Turning image files into model inputs: the one path used by training data and the API."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class ImageFormat:
    """How an image file becomes a model input, identical in training and serving."""

    size: int = 28
    invert: bool = True  # Omniglot draws dark strokes on white; the network sees strokes as 1
    channels: int = 1  # 1: greyscale, 3: RGB



GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def image_to_array(image: Image.Image, fmt: ImageFormat) -> np.ndarray:
    """fmt.channels (1: greyscale, 3: RGB; a greyscale image is replicated), resized to fmt.size,
    optionally inverted; uint8 [size, size] for one channel, [size, size, 3] for three."""
    converted = image.convert("L" if fmt.channels == 1 else "RGB")
    if converted.size != (fmt.size, fmt.size):
        converted = converted.resize((fmt.size, fmt.size), Image.Resampling.LANCZOS)
    pixels = np.asarray(converted, dtype=np.uint8)
    return 255 - pixels if fmt.invert else pixels


def is_greyscale(image: Image.Image) -> bool:
    """Whether the image has no colour: a grey mode, or red, green and blue equal at every pixel."""
    if image.mode in GREY_MODES:
        return True
    rgb = np.asarray(image.convert("RGB"))
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


MAX_PIXELS_SETTING = "FEWSHOT_MAX_IMAGE_PIXELS"  # named in errors: the setting that raises the limit
DEFAULT_MAX_PIXELS = 4096 * 4096  # store.settings.Settings.max_image_pixels


class ImageTooLarge(ValueError):
    """An image whose header declares more pixels than may be decoded; nothing was decoded."""

    def __init__(self, size: str, limit: int) -> None:
        super().__init__(f"{size}; at most {limit} pixels per image are decoded (setting {MAX_PIXELS_SETTING})")
        self.limit = limit


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """The image with only its header read: its size is known, no pixel is decoded yet.

    Raises ImageTooLarge when width * height > max_pixels, ValueError when PIL cannot read it.
    """
    try:
        image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # PIL's guard (Image.MAX_IMAGE_PIXELS)
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise ImageTooLarge(f"an image of {found[1]} pixels" if found else "an image", max_pixels) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"not a readable PNG or JPEG image ({exc})") from None
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageTooLarge(f"a {width}x{height} image ({width * height} pixels)", max_pixels)
    return image


def decode_image(data: bytes, fmt: ImageFormat, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """PNG or JPEG bytes to a float32 array [channels, size, size] in [0, 1].

    Raises ImageTooLarge (a ValueError) from the header alone when the image has more than
    max_pixels pixels, ValueError when the bytes are not an image PIL can read.
    """
    with open_image(data, max_pixels) as image:
        return model_input(image, fmt)


def model_input(image: Image.Image, fmt: ImageFormat) -> np.ndarray:
    """An image from open_image, decoded now, as a float32 array [channels, size, size] in [0, 1]."""
    try:
        image.load()
        pixels = image_to_array(image, fmt)
    except (OSError, Image.DecompressionBombError, SyntaxError, ValueError) as exc:
        raise ValueError(f"not a readable PNG or JPEG image ({exc})") from None
    return channels_first(pixels)


def channels_first(pixels: np.ndarray) -> np.ndarray:
    """uint8 [H, W] or [H, W, C] from image_to_array as float32 [C, H, W] in [0, 1]."""
    scaled = pixels.astype(np.float32) / 255.0
    return scaled[None] if scaled.ndim == 2 else np.ascontiguousarray(scaled.transpose(2, 0, 1))


def encode_png(pixels: np.ndarray) -> bytes:
    """A float [C, H, W] (C 1 or 3) or [H, W] array in [0, 1] (model space) as PNG bytes, uninverted."""
    arr = np.asarray(pixels)
    arr = arr.reshape(1, *arr.shape) if arr.ndim == 2 else arr
    levels = np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    if levels.shape[0] == 3:
        Image.fromarray(np.ascontiguousarray(levels.transpose(1, 2, 0)), mode="RGB").save(buf, format="PNG")
    else:
        Image.fromarray(levels[0], mode="L").save(buf, format="PNG")
    return buf.getvalue()
