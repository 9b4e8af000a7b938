from enum import StrEnum


class TaskPublicStatus(StrEnum):
    ADAPTING = "adapting"
    FAILED = "failed"
    READY = "ready"

    def __str__(self) -> str:
        return str(self.value)
