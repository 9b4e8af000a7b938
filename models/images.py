"""Turning image files into model inputs: the one path used by training data and the API."""

from __future__ import annotations

import io
import re

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
    """PNG or JPEG bytes to a float32 array [1, size, size] in [0, 1].

    Raises ImageTooLarge (a ValueError) from the header alone when the image has more than
    max_pixels pixels, ValueError when the bytes are not an image PIL can read.
    """
    with open_image(data, max_pixels) as image:
        return model_input(image, fmt)


def model_input(image: Image.Image, fmt: ImageFormat) -> np.ndarray:
    """An image from open_image, decoded now, as a float32 array [1, size, size] in [0, 1]."""
    try:
        image.load()
        pixels = image_to_array(image, fmt)
    except (OSError, Image.DecompressionBombError, SyntaxError, ValueError) as exc:
        raise ValueError(f"not a readable PNG or JPEG image ({exc})") from None
    return (pixels.astype(np.float32) / 255.0)[None]


def encode_png(pixels: np.ndarray) -> bytes:
    """A float [1, H, W] or [H, W] array in [0, 1] (model space) as PNG bytes, uninverted."""
    arr = np.asarray(pixels).reshape(pixels.shape[-2], pixels.shape[-1])
    grey = np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(grey, mode="L").save(buf, format="PNG")
    return buf.getvalue()
