from enum import StrEnum


class DatasetPublicFormat(StrEnum):
    BUILTIN = "builtin"
    CSV = "csv"
    IMAGES = "images"
    NPZ = "npz"

    def __str__(self) -> str:
        return str(self.value)
