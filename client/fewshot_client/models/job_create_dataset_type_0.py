from enum import StrEnum


class JobCreateDatasetType0(StrEnum):
    MNIST = "mnist"
    MTL_SYNTHETIC = "mtl-synthetic"
    OMNIGLOT = "omniglot"
    SINUSOID = "sinusoid"

    def __str__(self) -> str:
        return str(self.value)
