"""The artifact store on both backends, a folder and a bucket on a real S3-compatible server.

Every behaviour the service relies on is checked on each: tensors and metadata in and out,
exists, delete_prefix, atomic writes, and the local file that readers of a path get.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save

from models.arrays import load_array_file, read_npz
from store.artifacts import (
    ArtifactStore,
    ObjectArtifactStore,
    artifact_store,
    dataset_key,
    serialize,
    state_key,
    task_prefix,
)
from store.settings import Settings
from tests.e2e.api_support import blobs_npz
from tests.store.conftest import S3Server, s3_settings


@pytest.fixture(params=["folder", "s3"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "folder":
        return Settings(data_dir=tmp_path)
    server: S3Server = request.getfixturevalue("s3_server")
    return s3_settings(tmp_path, server, server.new_bucket())


@pytest.fixture
def store(settings: Settings) -> ArtifactStore:
    return artifact_store(settings)


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "weight": torch.randn(4, 3, generator=g).t(),  # not contiguous: stored all the same
        "steps": torch.arange(5, dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
        "half": torch.randn(2, 2, generator=g).to(torch.bfloat16),
    }


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def test_the_setting_chooses_the_backend(tmp_path: Path, s3_server: S3Server) -> None:
    assert artifact_store(Settings(data_dir=tmp_path)) == ArtifactStore(tmp_path / "artifacts")  # the default
    shared = tmp_path / "nfs" / "artifacts"
    assert artifact_store(Settings(data_dir=tmp_path, artifact_url=str(shared))) == ArtifactStore(shared)
    assert artifact_store(Settings(data_dir=tmp_path, artifact_url=f"file://{shared}")) == ArtifactStore(shared)
    s3 = s3_settings(tmp_path, s3_server, "bkt", "a/b")
    store = artifact_store(s3)
    assert isinstance(store, ObjectArtifactStore) and store.location == "s3://bkt/a/b"
    assert store == artifact_store(s3) and hash(store) == hash(artifact_store(s3))  # one identity: caches key on it
    with pytest.raises(ValueError, match="artifact_store"):
        _ = s3.artifact_dir  # no folder to hand out
    with pytest.raises(ValueError, match=r"s3://bucket"):
        artifact_store(Settings(data_dir=tmp_path, artifact_url="gs://bkt/a"))
    with pytest.raises(NotImplementedError, match="local_file"):
        store.path("models/m/theta.safetensors")


def test_tensors_and_metadata_round_trip(store: ArtifactStore) -> None:
    tensors, metadata = _tensors(), {"step": "7", "generator": "[1, 2, 3]"}
    size = store.save("jobs/j/checkpoints/step-7.safetensors", tensors, metadata)
    assert size == len(save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata))
    assert _same(store.load("jobs/j/checkpoints/step-7.safetensors"), tensors)
    loaded, meta = store.load_with_metadata("jobs/j/checkpoints/step-7.safetensors")
    assert _same(loaded, tensors) and meta == metadata
    store.save("models/m/theta.safetensors", {"w": torch.ones(2)})  # no metadata at all
    assert store.load_with_metadata("models/m/theta.safetensors")[1] == {}
    with pytest.raises(FileNotFoundError):
        store.load("models/missing/theta.safetensors")


def test_exists_and_delete_prefix_take_a_whole_folder_and_nothing_beside_it(store: ArtifactStore) -> None:
    one = {"x": torch.zeros(1)}
    keys = ["tasks/t1/support.safetensors", "tasks/t1/state.safetensors", "tasks/t10/state.safetensors", "models/m/theta.safetensors"]
    for key in keys:
        store.save(key, one)
    assert all(store.exists(k) for k in keys) and store.exists(task_prefix("t1"))
    assert not store.exists("tasks/t2/state.safetensors") and not store.exists(task_prefix("t2"))

    store.delete_prefix(task_prefix("t1"))
    assert not store.exists(keys[0]) and not store.exists(keys[1]) and not store.exists(task_prefix("t1"))
    assert store.exists("tasks/t10/state.safetensors")  # t1 is not a string prefix of t10's folder
    store.delete_prefix("models/m/theta.safetensors")  # one artifact by its key
    assert not store.exists("models/m/theta.safetensors")
    store.delete_prefix(task_prefix("never-written"))  # nothing there: no error
    store.delete_prefix(task_prefix("t1"))
    for everything in ("", ".", "tasks/.."):
        with pytest.raises(ValueError, match="whole artifact store"):
            store.delete_prefix(everything)
    assert store.exists("tasks/t10/state.safetensors")


def test_keys_cannot_leave_the_store(store: ArtifactStore) -> None:
    for key in ("../outside.safetensors", "tasks/../../outside.safetensors"):
        with pytest.raises(ValueError, match="leaves the store"):
            store.save(key, {"x": torch.zeros(1)})
        with pytest.raises(ValueError, match="leaves the store"):
            store.exists(key)


def test_a_failed_save_leaves_the_previous_artifact_whole(store: ArtifactStore, settings: Settings) -> None:
    key = state_key("t")
    store.save(key, {"x": torch.ones(3)})
    shared = torch.zeros(3)
    with pytest.raises(RuntimeError, match="share memory"):
        store.save(key, {"a": shared, "b": shared})  # safetensors refuses tensors sharing memory
    assert _same(store.load(key), {"x": torch.ones(3)})
    store.save(key, {"x": torch.full((3,), 2.0)})  # a whole new version replaces the old one
    assert _same(store.load(key), {"x": torch.full((3,), 2.0)})
    assert not [p for p in settings.data_dir.rglob(".tmp-*")]  # no temp file left behind


def test_local_file_hands_readers_a_whole_file(store: ArtifactStore, settings: Settings) -> None:
    data = read_npz(blobs_npz(n_classes=6, per_class=4))
    key = dataset_key("ds_1")
    store.save(key, data.tensors(), metadata=data.metadata())
    path = store.local_file(key)
    got = load_array_file(str(path))  # what a worker does with an uploaded dataset
    assert torch.equal(got.x, data.x) and torch.equal(got.y, data.y) and got.output == data.output
    assert store.local_file(key) == path  # downloaded once (S3), or the file itself (folder)
    if isinstance(store, ObjectArtifactStore):
        assert path.is_relative_to(settings.cache_dir / "artifacts")
        store.save(key, {"x": torch.ones(1), "y": torch.ones(1)}, metadata=data.metadata())  # a new version
        assert store.local_file(key) != path and torch.equal(store.load(key)["x"], torch.ones(1))
        store.delete_prefix("datasets/ds_1")
        assert not path.exists()  # this machine's copies go with the objects
    else:
        assert path == settings.artifact_dir.resolve() / key
        store.delete_prefix("datasets/ds_1")
    with pytest.raises(FileNotFoundError, match="not in the store"):
        store.local_file(key)


def test_concurrent_readers_of_a_local_file_all_get_it_whole(store: ArtifactStore, settings: Settings) -> None:
    tensors = {"x": torch.randn(256, 64, generator=torch.Generator().manual_seed(1))}
    store.save("models/m/theta.safetensors", tensors)
    paths: list[Path] = []
    errors: list[BaseException] = []

    def read() -> None:
        try:
            path = store.local_file("models/m/theta.safetensors")
            assert _same(ArtifactStore(path.parent).load(path.name), tensors)
            paths.append(path)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    assert len(paths) == 8 and len(set(paths)) == 1
    assert not [p for p in settings.data_dir.rglob(".tmp-*")]


def test_files_are_the_bytes_safetensors_writes() -> None:
    """store.artifacts writes safetensors files itself (faster for many small tensors): the bytes are
    safetensors.torch.save's, for every dtype it lays out, any name, empty and 0-dim tensors; other
    dtypes and tensors sharing memory go through safetensors (its refusal included)."""
    g = torch.Generator().manual_seed(1)
    every_dtype = {
        f"t{i}": (torch.randn(3, 2, generator=g) * 10).to(dtype)
        for i, dtype in enumerate([torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64,
                                   torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool])
    }
    odd = {"é naïve \"quoted\"": torch.ones(2), "empty": torch.zeros(0, 3), "scalar": torch.tensor(2.5), "b": torch.ones(1)}
    for tensors in (_tensors(), every_dtype, odd, {}):
        for metadata in (None, {"step": "7"}, {"note": "line\nbreak \u00e9"}):
            expected = save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)
            assert serialize(tensors, metadata) == expected
    if hasattr(torch, "float8_e4m3fn"):  # a dtype safetensors handles and the fast path does not
        eight = {"w": torch.ones(4).to(torch.float8_e4m3fn), "x": torch.ones(2)}
        assert serialize(eight) == save(eight)
    shared = torch.zeros(3)
    with pytest.raises(RuntimeError, match="share memory"):
        serialize({"a": shared, "b": shared})
