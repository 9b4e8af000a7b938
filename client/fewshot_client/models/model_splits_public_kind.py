from enum import StrEnum


class ModelSplitsPublicKind(StrEnum):
    CLASSES = "classes"
    TASKS = "tasks"

    def __str__(self) -> str:
        return str(self.value)
