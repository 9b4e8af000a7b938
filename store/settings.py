"""One settings object for the API, the workers and the CLI, read from the environment."""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FEWSHOT_", extra="ignore")

    data_dir: Path = Path(".fewshot")
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "FEWSHOT_DATABASE_URL")
    )
    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL", "FEWSHOT_REDIS_URL"))
    omniglot_dir: Path | None = None  # default: <data_dir>/datasets/omniglot
    mnist_dir: Path | None = None  # default: <data_dir>/datasets/mnist (IDX .gz files)
    # Where artifacts live, shared by every API process and worker: a folder (local or on a shared
    # filesystem) or s3://bucket/prefix (credentials from AWS_*). Default: <data_dir>/artifacts.
    artifact_url: str | None = None
    s3_endpoint_url: str | None = None  # an S3-compatible server other than AWS (MinIO, Ceph, ...)
    # torch intra-op threads per process; on a 2-core machine the API and each worker take 1
    # so that they never oversubscribe the cores.
    torch_threads: int = 1
    # Where a worker runs its learners: cpu, cuda, cuda:N or auto. `fewshot worker --device cuda:1`
    # binds a worker to one GPU (CUDA_VISIBLE_DEVICES); the API process always predicts on the CPU.
    device: str = "cpu"
    # Workers keep freed blocks of up to 32 MB in glibc's heap instead of returning them to the
    # system after every use (mallopt M_MMAP_THRESHOLD and M_TRIM_THRESHOLD): a second-order
    # meta-step took 18,000 page faults and 7% more CPU without it (benchmarks/RESULTS.md).
    malloc_tuned: bool = True
    # How long POST /v1/models/{id}/tasks waits for the worker's adaptation before 202.
    adapt_wait_seconds: float = 30.0
    # The job ledger: a worker holds a job's lease while it runs it, renewing it every third
    # of its length; a job whose lease expired is taken over by another worker, from its last
    # checkpoint, at most max_attempts times in all.
    lease_seconds: float = 30.0
    max_attempts: int = 3
    reconcile_seconds: float = 15.0  # how often each worker re-sends lost and expired work
    # Redis redelivers an unacknowledged message after this long; keep it above lease_seconds.
    visibility_timeout: float = 12 * 3600.0
    task_cache_size: int = 1024  # adapted task states kept in the API process
    max_request_bytes: int = 32 * 1024 * 1024
    max_upload_bytes: int = 512 * 1024 * 1024  # POST /v1/datasets (npz or zip)
    # Every /v1 route needs an API key when this is set or once any key exists.
    require_auth: bool = False
    # Requests per minute per tenant on /v1 routes, counted in Redis across API processes;
    # 0 turns the limit off. Over it: 429 with Retry-After.
    rate_limit_per_minute: int = 0

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            url = self.database_url
            if url.startswith("postgres://"):
                url = "postgresql://" + url[len("postgres://") :]
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url[len("postgresql://") :]
            return url
        return f"sqlite:///{(self.data_dir / 'fewshot.db').resolve()}"

    @property
    def artifact_dir(self) -> Path:
        """The artifact folder when artifacts are files; store.artifacts.artifact_store(settings) covers S3 too."""
        url = self.artifact_url
        if url and "://" in url and not url.startswith("file://"):
            raise ValueError(f"artifacts live at {url}, not in a folder: use store.artifacts.artifact_store(settings)")
        return Path(url.removeprefix("file://")) if url else self.data_dir / "artifacts"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def omniglot_path(self) -> Path:
        return self.omniglot_dir or self.data_dir / "datasets" / "omniglot"

    @property
    def mnist_path(self) -> Path:
        return self.mnist_dir or self.data_dir / "datasets" / "mnist"

    @property
    def broker_url(self) -> str:
        if not self.redis_url:
            raise RuntimeError(
                "REDIS_URL is not set: `fewshot serve` starts an embedded Redis and sets it; "
                "a worker or API started alone needs REDIS_URL=redis://host:6379/0"
            )
        return self.redis_url


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
