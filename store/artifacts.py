"""Tensors on disk as safetensors files, written atomically; never pickled."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


class ArtifactStore:
    """Keys are relative paths like `models/mdl_x/theta.safetensors` under one root folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"artifact key {key!r} leaves the store")
        return path

    def save(self, key: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> int:
        """Write then rename, so a reader never sees half a file. Returns the bytes written."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".safetensors")
        os.close(fd)
        try:
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path.stat().st_size

    def load(self, key: str) -> dict[str, torch.Tensor]:
        return load_file(self.path(key))

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def delete_prefix(self, prefix: str) -> None:
        """Remove a folder of artifacts (a task's or a model's)."""
        path = self.path(prefix)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def theta_key(model_id: str) -> str:
    """A model's meta-parameters."""
    return f"models/{model_id}/theta.safetensors"


def support_key(task_id: str) -> str:
    """A task's support set (`x`, `y`), written by the API for the worker to adapt on."""
    return f"tasks/{task_id}/support.safetensors"


def state_key(task_id: str) -> str:
    """A task's adapted state phi."""
    return f"tasks/{task_id}/state.safetensors"


def task_prefix(task_id: str) -> str:
    return f"tasks/{task_id}"
