from enum import StrEnum


class DatasetPublicFormat(StrEnum):
    BUILTIN = "builtin"
    IMAGES = "images"
    NPZ = "npz"

    def __str__(self) -> str:
        return str(self.value)
