"""Shared fixtures. The test process runs torch on one thread: the workers it starts take the
other core, and two busy processes at two threads each on two cores run many times slower.

The database: every test outside NO_DATABASE is marked `database` unless it picks its own
(parametrized over sqlite/postgres, or using `postgres_url`). FEWSHOT_TEST_DATABASE=postgres runs
those on a fresh PostgreSQL database each (module-scoped fixtures get one per module) through
DATABASE_URL; on sqlite (the default) DATABASE_URL is unset and Settings(data_dir=...) uses its file.
scripts/test runs the suite on SQLite, then `-m database` again on PostgreSQL."""

from __future__ import annotations

import os

for _key, _value in {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}.items():
    os.environ.setdefault(_key, _value)

from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.db_urls import DATABASE_ENV, KINDS, POSTGRES_ADMIN_URL, TEST_DATABASE, fresh_database  # noqa: E402

torch.set_num_threads(1)
for _key in DATABASE_ENV:  # the database is the tests' choice, never the shell's
    os.environ.pop(_key, None)

TESTS = Path(__file__).resolve().parent
# Learners, datasets, artifacts, the OpenAPI file, the compose file and the benchmarks' smoke runs
# (each script keeps its own state) only: they run once, in the SQLite pass.
NO_DATABASE = (TESTS / "models", TESTS / "benchmarks", TESTS / "store" / "test_artifacts.py",
               TESTS / "service" / "test_openapi.py", TESTS / "service" / "test_predictor.py",
               TESTS / "test_import_rules.py", TESTS / "test_compose.py")


def pytest_report_header(config: pytest.Config) -> str:
    where = f"PostgreSQL ({POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}), a fresh database per test" if TEST_DATABASE == "postgres" else "SQLite"
    return f"fewshot tests marked `database` run on: {where} (FEWSHOT_TEST_DATABASE={TEST_DATABASE})"


def _picks_its_database(item: pytest.Item) -> bool:
    """A test parametrized over sqlite/postgres, or asking for postgres_url, runs on both already."""
    params = getattr(item, "callspec", None)
    chosen = params.params.values() if params is not None else ()
    return "postgres_url" in getattr(item, "fixturenames", ()) or any(v in KINDS for v in chosen if isinstance(v, str))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not any(item.path.is_relative_to(folder) for folder in NO_DATABASE) and not _picks_its_database(item):
            item.add_marker(pytest.mark.database)


@contextmanager
def _postgres_env(tmp_path: Path) -> Iterator[str]:
    """DATABASE_URL set to a fresh PostgreSQL database while inside; the database dropped after."""
    with fresh_database("postgres", tmp_path) as url, pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATABASE_URL", url)
        yield url


@pytest.fixture(scope="module", autouse=True)
def _module_database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Module-scoped fixtures build their Settings before any function fixture runs: give them one."""
    module_items = [i for i in request.session.items if i.path == request.path]
    if TEST_DATABASE != "postgres" or not any(i.get_closest_marker("database") for i in module_items):
        yield
        return
    with _postgres_env(tmp_path_factory.getbasetemp()):
        yield


@pytest.fixture(autouse=True)
def _test_database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Each test its own empty database, as each gets its own SQLite file under tmp_path."""
    if TEST_DATABASE != "postgres" or request.node.get_closest_marker("database") is None:
        yield
        return
    with _postgres_env(tmp_path_factory.getbasetemp()):
        yield

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
