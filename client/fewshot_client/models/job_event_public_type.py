from enum import StrEnum


class JobEventPublicType(StrEnum):
    CHECKPOINT = "checkpoint"
    PROGRESS = "progress"
    STATUS = "status"
    WARNING = "warning"

    def __str__(self) -> str:
        return str(self.value)
