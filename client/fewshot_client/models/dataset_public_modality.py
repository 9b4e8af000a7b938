from enum import StrEnum


class DatasetPublicModality(StrEnum):
    IMAGE = "image"
    VECTOR = "vector"

    def __str__(self) -> str:
        return str(self.value)
