from enum import StrEnum


class JobEventPublicType(StrEnum):
    CHECKPOINT = "checkpoint"
    PROGRESS = "progress"
    STATUS = "status"

    def __str__(self) -> str:
        return str(self.value)
