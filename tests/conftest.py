"""Shared fixtures. The test process runs torch on one thread: the workers it starts take the
other core, and two busy processes at two threads each on two cores run many times slower."""

from __future__ import annotations

import os

for _key, _value in {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}.items():
    os.environ.setdefault(_key, _value)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def omniglot_dir() -> Path:
    path = DATASETS / "omniglot"
    assert path.exists(), f"the shared Omniglot archives are missing at {path}"
    return path


@pytest.fixture(scope="session")
def dataset_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dataset-cache")
