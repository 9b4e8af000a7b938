"""Tensors as safetensors artifacts, written atomically; never pickled.

Two places hold them, chosen by one setting (`FEWSHOT_ARTIFACT_URL`, see `artifact_store`):
a folder (local, or shared by many machines over NFS and the like), or a bucket on an
S3-compatible server through fsspec/s3fs. Both take the same keys, e.g.
`models/mdl_x/theta.safetensors`.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any

import fsspec
import torch
from safetensors import safe_open
from safetensors.torch import load, load_file, save, save_file

from store.settings import Settings

Tensors = dict[str, torch.Tensor]


def _portable(tensors: Tensors) -> Tensors:
    return {k: v.detach().contiguous().cpu() for k, v in tensors.items()}


def _fresh_temp(folder: Path, suffix: str = ".safetensors") -> Path:
    """An empty temp file beside its final name, so that os.replace is one atomic rename."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    return Path(tmp)


class ArtifactStore:
    """Artifacts as files under one root folder; keys are relative paths under it."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    @property
    def location(self) -> str:
        """Where the artifacts live, for messages."""
        return str(self.root.resolve())

    def identity(self) -> tuple[str, ...]:
        """Two stores with one identity hold the same artifacts (so a store can key a cache)."""
        return (type(self).__name__, self.location)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ArtifactStore) and other.identity() == self.identity()

    def __hash__(self) -> int:
        return hash(self.identity())

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"artifact key {key!r} leaves the store")
        return path

    def local_file(self, key: str) -> Path:
        """A file on this machine holding the artifact, for readers that want a path: here the file itself."""
        path = self.path(key)
        if not path.is_file():
            raise FileNotFoundError(f"artifact {key!r} is not in the store at {self.location}")
        return path

    def save(self, key: str, tensors: Tensors, metadata: dict[str, str] | None = None) -> int:
        """Write then rename, so a reader never sees half a file. Returns the bytes written."""
        path = self.path(key)
        tmp = _fresh_temp(path.parent)
        try:
            save_file(_portable(tensors), tmp, metadata=metadata)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path.stat().st_size

    def load(self, key: str) -> Tensors:
        return load_file(self.path(key))

    def load_with_metadata(self, key: str) -> tuple[Tensors, dict[str, str]]:
        with safe_open(str(self.path(key)), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def delete_prefix(self, prefix: str) -> None:
        """Remove a folder of artifacts (a task's or a model's)."""
        path = self.path(prefix)
        if path == self.root.resolve():
            raise ValueError(f"prefix {prefix!r} names the whole artifact store; give a model's, task's or job's folder")
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


class ObjectArtifactStore(ArtifactStore):
    """Artifacts as objects under `s3://bucket/prefix` on any S3-compatible server (through s3fs).

    A PUT of a whole object is atomic, so `save` uploads the serialized bytes in one request.
    `local_file` downloads an object once into `cache_dir`, named by its ETag, through a temp
    file and a rename, so concurrent readers (threads or processes) never see half a file.
    A subclass of ArtifactStore so that callers typed against it take either; `path` has no
    meaning here and says to call `local_file`.
    """

    def __init__(self, url: str, cache_dir: Path, storage_options: dict[str, Any] | None = None) -> None:
        protocol, _, base = url.partition("://")
        if protocol not in ("s3", "s3a") or not base.strip("/"):
            raise ValueError(f"artifact URL {url!r} is not s3://bucket[/prefix]; give a folder path or an s3:// URL")
        self.url = url.rstrip("/")
        self.base = base.strip("/")  # bucket/prefix
        self.cache_dir = Path(cache_dir)
        # Listings are not cached: another machine may add or delete objects at any time.
        self.storage_options = {"use_listings_cache": False, **(storage_options or {})}

    @property
    def location(self) -> str:
        return self.url

    def identity(self) -> tuple[str, ...]:
        return (type(self).__name__, self.url, json.dumps(self.storage_options, sort_keys=True, default=str))

    @property
    def fs(self) -> Any:
        """The s3fs filesystem; fsspec keeps one per process (a forked worker gets its own)."""
        return fsspec.filesystem("s3", **self.storage_options)

    def _object(self, key: str) -> str:
        clean = posixpath.normpath(key)
        if key.startswith("/") or clean in (".", "..") or clean.startswith("../"):
            raise ValueError(f"artifact key {key!r} leaves the store")
        return f"{self.base}/{clean}"

    def path(self, key: str) -> Path:
        raise NotImplementedError(
            f"artifacts live in {self.url}, not in a local folder: call local_file(key) for a local copy"
        )

    def local_file(self, key: str) -> Path:
        remote = self._object(key)
        try:
            info = self.fs.info(remote)
        except FileNotFoundError:
            raise FileNotFoundError(f"artifact {key!r} is not in the store at {self.url}") from None
        if info.get("type") != "file":
            raise FileNotFoundError(f"artifact {key!r} in {self.url} is a prefix of several objects, not one")
        tag = re.sub(r"[^0-9A-Za-z_-]", "", str(info.get("ETag") or info.get("size")))
        name = posixpath.basename(remote)
        stem, dot, suffix = name.partition(".")
        cached = self.cache_dir / self.base / posixpath.dirname(key) / f"{stem}.{tag}{dot}{suffix}"
        if cached.is_file():
            return cached
        tmp = _fresh_temp(cached.parent)
        try:
            self.fs.get_file(remote, str(tmp))
            os.replace(tmp, cached)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return cached

    def save(self, key: str, tensors: Tensors, metadata: dict[str, str] | None = None) -> int:
        data = save(_portable(tensors), metadata=metadata)
        self.fs.pipe_file(self._object(key), data)
        return len(data)

    def load(self, key: str) -> Tensors:
        return load(self.fs.cat_file(self._object(key)))

    def load_with_metadata(self, key: str) -> tuple[Tensors, dict[str, str]]:
        data = self.fs.cat_file(self._object(key))
        (header_size,) = struct.unpack("<Q", data[:8])  # safetensors: u64 header length, then JSON header
        header = json.loads(data[8 : 8 + header_size])
        return load(data), dict(header.get("__metadata__") or {})

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self._object(key)))

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object under the prefix (or the one object it names), and this machine's copies."""
        if posixpath.normpath(prefix) == ".":
            raise ValueError(f"prefix {prefix!r} names the whole artifact store; give a model's, task's or job's folder")
        try:
            self.fs.rm(self._object(prefix), recursive=True)
        except FileNotFoundError:
            pass  # nothing there: already deleted, or never written
        shutil.rmtree(self.cache_dir / self.base / posixpath.normpath(prefix), ignore_errors=True)


def artifact_store(settings: Settings) -> ArtifactStore:
    """The store every API process and worker uses: FEWSHOT_ARTIFACT_URL, a folder or s3://bucket/prefix.

    S3 credentials and region come from the usual AWS_* variables (or ~/.aws); the server from
    FEWSHOT_S3_ENDPOINT_URL (or AWS_ENDPOINT_URL), for MinIO, Ceph, R2 and the like.
    """
    url = settings.artifact_url
    if url is None or "://" not in url or url.startswith("file://"):
        return ArtifactStore(settings.artifact_dir)
    options = {"endpoint_url": settings.s3_endpoint_url} if settings.s3_endpoint_url else {}
    return ObjectArtifactStore(url, settings.cache_dir / "artifacts", options)


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


def model_prefix(model_id: str) -> str:
    return f"models/{model_id}"


def dataset_key(dataset_id: str) -> str:
    """An uploaded dataset's validated arrays (x, y, task) with its metadata."""
    return f"datasets/{dataset_id}/arrays.safetensors"


def checkpoint_key(job_id: str, step: int) -> str:
    """The learner's state at one step of a job."""
    return f"jobs/{job_id}/checkpoints/step-{step:09d}.safetensors"
