from enum import StrEnum


class JobCreateAlgorithm(StrEnum):
    ANIL = "anil"
    BLACKBOX = "blackbox"
    FINETUNE = "finetune"
    FOMAML = "fomaml"
    MAML = "maml"
    METASGD = "metasgd"
    MULTITASK = "multitask"
    PROTONET = "protonet"

    def __str__(self) -> str:
        return str(self.value)
