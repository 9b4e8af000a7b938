"""Input modalities. Adding one: a module here with its Modality subclass, one line in MODALITIES."""

from __future__ import annotations

from typing import Any

from models.modality.base import DecodeContext, InputError, Modality, UploadError
from models.modality.image import ImageModality
from models.modality.vector import VectorModality

MODALITIES: dict[str, type[Modality]] = {cls.name: cls for cls in (ImageModality, VectorModality)}

__all__ = ["MODALITIES", "DecodeContext", "ImageModality", "InputError", "Modality", "UploadError", "VectorModality",
           "legacy_modality", "modality_from_json"]


def modality_from_json(data: dict[str, Any]) -> Modality:
    """The modality a ProblemSpec or dataset stored (Modality.to_json)."""
    fields = dict(data)
    name = fields.pop("name")
    if name not in MODALITIES:
        raise ValueError(f"unknown modality {name!r}; known: {', '.join(sorted(MODALITIES))}")
    for key, value in fields.items():
        if isinstance(value, list):
            fields[key] = tuple(value)
    return MODALITIES[name](**fields)


def legacy_modality(input_shape: tuple[int, ...] | list[int], image: Any = None) -> Modality:
    """The modality of a spec or dataset stored before modalities were named (its input shape and
    image format): square [C, H, H] inputs were images through Conv4, anything else vectors."""
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 3 and shape[1] == shape[2]:
        invert = bool(getattr(image, "invert", None) if not isinstance(image, dict) else image.get("invert", False))
        return ImageModality(channels=shape[0], size=shape[1], invert=invert)
    return VectorModality(shape)
