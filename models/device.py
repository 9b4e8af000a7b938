"""Where tensors live: one device per worker, chosen by FEWSHOT_DEVICE (cpu, cuda, cuda:N, auto).

Data is sampled on the CPU (seeded CPU generators) and moved to the learner's device batch by
batch; every artifact is written from the CPU.
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar

import torch
from torch import Tensor

T = TypeVar("T")


def resolve_device(name: str) -> torch.device:
    """`auto` is the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"FEWSHOT_DEVICE={name} but this process sees no CUDA device (check CUDA_VISIBLE_DEVICES)")
    return device


def to_device(obj: T, device: torch.device) -> T:
    """Tensors inside tensors, dataclasses, lists, tuples and dicts, moved to `device`."""
    if isinstance(obj, Tensor):
        return obj.to(device, non_blocking=True)  # type: ignore[return-value]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {f.name: to_device(getattr(obj, f.name), device) for f in dataclasses.fields(obj) if f.init}
        return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
    if isinstance(obj, list):
        return [to_device(v, device) for v in obj]  # type: ignore[return-value]
    if isinstance(obj, tuple):
        return tuple(to_device(v, device) for v in obj)  # type: ignore[return-value]
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}  # type: ignore[return-value]
    return obj

