"""Images: `channels` (1 greyscale, 3 RGB) x `size` x `size` pixels in [0, 1], through Conv4.

JSON inputs are nested lists [channels, size, size] or base64 PNG/JPEG files; a file whose
colour does not match the model's channels is converted (a greyscale image replicated to RGB,
a colour image converted to greyscale) and the conversion is reported. Uploads are zips of
class folders; their channels are detected from the images unless asked for.
"""

from __future__ import annotations

import base64
import binascii
import io
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, ClassVar

import numpy as np
from PIL import Image
from torch import nn

from models.images import (
    ImageFormat,
    ImageTooLarge,
    channels_first,
    image_to_array,
    is_greyscale,
    model_input,
    open_image,
)
from models.modality.base import MAX_EXAMPLES, DecodeContext, InputError, Modality, UploadError, decode_numbers
from models.nets import Conv4, SupportNormConv4

COLOUR_CHANNELS = (1, 3)  # what an image file can be decoded to
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
MAX_IMAGE_FILE_BYTES = 64 * 1024 * 1024  # one image file in a zip, uncompressed: no zip bomb is inflated in memory


@dataclass(frozen=True)
class ImageModality(Modality):
    name: ClassVar[str] = "image"
    channels: int = 1
    size: int = 28
    invert: bool = False  # grey levels inverted (dark strokes on white become 1)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.channels, self.size, self.size)

    @property
    def format(self) -> ImageFormat:
        return ImageFormat(size=self.size, invert=self.invert, channels=self.channels)

    def parameters(self) -> dict[str, Any]:
        return {"channels": self.channels, "size": self.size, "invert": self.invert}

    def json_numbers(self, value: Any) -> int:
        return 0 if isinstance(value, str) else self.features  # a base64 file: counted as pixels when decoded

    def decode_json(self, value: Any, param: str, context: DecodeContext) -> np.ndarray:
        if not isinstance(value, str):
            return decode_numbers(value, self.input_shape, param, "a nested list of numbers or a base64 PNG/JPEG image")
        if self.channels not in COLOUR_CHANNELS:
            raise InputError(f"{param}: this model takes {self.channels}-channel inputs as nested lists, not image files",
                             param, "invalid_input_type")
        data = _b64decode(value, param)
        try:
            with open_image(data, context.max_image_pixels) as image:  # the header only: no pixel decoded yet
                context.take_pixels(*image.size, param)
                image.load()
                grey = is_greyscale(image)
                pixels = model_input(image, self.format)
        except ImageTooLarge as exc:
            raise InputError(f"{param} is {exc}", param, "image_too_large") from None
        except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
            raise InputError(f"{param}: {exc}", param, "invalid_image") from None
        if grey and self.channels == 3:
            context.conversions.append(f"{param}: greyscale image replicated to 3 channels (the model takes colour images)")
        elif not grey and self.channels == 1:
            context.conversions.append(f"{param}: colour image converted to greyscale (the model takes greyscale images)")
        return pixels

    def backbone(self, out_dim: int, hidden: list[int], channels: int, running_stats: bool = False) -> nn.Module:
        return Conv4(self.channels, self.size, out_dim, channels, running_stats)

    def support_encoder(self, hidden: list[int], channels: int) -> nn.Module:
        return SupportNormConv4(self.channels, self.size, channels)


def _b64decode(value: str, param: str) -> bytes:
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{param} is not valid base64", param, "invalid_base64") from None


@dataclass(frozen=True)
class ImageFolders:
    """A zip of class folders, decoded: pixels [n, C, size, size] in [0, 1], class index per image."""

    x: np.ndarray
    labels: list[int]
    class_names: list[str]
    modality: ImageModality


def read_image_zip(data: bytes, size: int, invert: bool, channels: int | None, max_image_pixels: int) -> ImageFolders:
    """A zip of class folders of PNG/JPEG images at size x size; channels None: 1 when every image
    is greyscale, else 3. Raises UploadError saying what to fix.

    Each image's size is read from its header and refused past max_image_pixels before it is
    decoded; a file whose uncompressed size passes MAX_IMAGE_FILE_BYTES is refused unread.
    """
    if channels is not None and channels not in COLOUR_CHANNELS:
        raise UploadError(f"channels must be 1 (greyscale) or 3 (colour), got {channels}")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise UploadError("the file is neither an .npz nor a .zip of class folders of images (a CSV table must be named .csv)") from None
    files = [
        PurePosixPath(info.filename) for info in archive.infolist()
        if not info.is_dir() and PurePosixPath(info.filename).suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith((".", "__MACOSX")) for part in PurePosixPath(info.filename).parts)
    ]
    if not files:
        raise UploadError("the zip holds no .png or .jpg images; put each class's images in a folder named after it")
    if len(files) > MAX_EXAMPLES:
        raise UploadError(f"the zip holds {len(files)} images; at most {MAX_EXAMPLES} are accepted")
    if any(len(p.parts) < 2 for p in files):
        raise UploadError("images must sit in class folders (<class>/<image>.png), not at the top of the zip")
    names = sorted({p.parts[-2] for p in files})
    if len({p.parts[:-2] for p in files}) > 1:
        raise UploadError("class folders must all sit at the same level of the zip")
    index = {name: i for i, name in enumerate(names)}
    files = sorted(files)
    if channels is None:  # colour when any image has colour: the first one found ends the scan
        channels = 3 if any(not _read(archive, p, max_image_pixels, is_greyscale) for p in files) else 1
    fmt = ImageFormat(size=size, invert=invert, channels=channels)
    pixels = [_read(archive, p, max_image_pixels, lambda image: channels_first(image_to_array(image, fmt))) for p in files]
    labels = [index[p.parts[-2]] for p in files]
    return ImageFolders(np.stack(pixels), labels, names, ImageModality(channels, size, invert))


def _read(archive: zipfile.ZipFile, path: PurePosixPath, max_pixels: int, use: Any) -> Any:
    """use(image) of one decoded image of the zip, its errors as UploadError naming the file."""
    size = archive.getinfo(str(path)).file_size  # declared; zipfile never reads past it
    if size > MAX_IMAGE_FILE_BYTES:
        raise UploadError(f"{path} holds {size} bytes uncompressed; image files of at most {MAX_IMAGE_FILE_BYTES} are read")
    try:
        with open_image(archive.read(str(path)), max_pixels) as image:  # header only, then decoded
            image.load()
            return use(image)
    except ImageTooLarge as exc:  # its message names the limit and its setting
        raise UploadError(f"{path} is {exc}") from None
    except ValueError as exc:  # open_image's: not an image PIL can read
        raise UploadError(f"{path} is {exc}") from None
    except (OSError, Image.DecompressionBombError, SyntaxError, zipfile.BadZipFile, EOFError) as exc:
        raise UploadError(f"{path} is not a readable PNG or JPEG image ({exc})") from None
