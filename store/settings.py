"""One settings object for the API, the workers and the CLI, read from the environment."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
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
    # An adapt worker that takes a task adapts up to adapt_batch_max of its model's waiting tasks
    # (1: one task a message), adapt_chunk at a time through one call of the learner's adapt_many,
    # recording and announcing each chunk as it ends (workers/pipelines.adapt_tasks). On the CPU the
    # MAML family's adapt_many is a loop, so a small chunk answers a burst's first tasks sooner at
    # no cost; on CUDA its vmap over a chunk is the gain, so raise adapt_chunk there.
    adapt_batch_max: int = Field(default=64, ge=1, le=1024)
    adapt_chunk: int = Field(default=8, ge=1, le=1024)
    # Pool processes of the adapt worker `fewshot serve` starts, each with its own torch threads
    # and model cache (default: 2, or 1 on a one-core machine): a burst's batches adapt on two
    # cores at once (a burst of 100 MAML adaptations: 4.2-4.6 s against 4.7-5.5 s with one process).
    adapt_processes: int = Field(default_factory=lambda: min(2, os.cpu_count() or 1), ge=1, le=64)
    # How long POST /v1/models/{id}/tasks waits for the worker's adaptation before 202.
    adapt_wait_seconds: float = 30.0
    # Adaptations in flight (admitted, not yet answered) per API process and per tenant; over
    # them POST /v1/models/{id}/tasks answers 503 `overloaded` / 429 `too_many_adaptations` with
    # Retry-After at once; 0 turns a bound off. The process bound is taken before any database
    # work (it caps the requests that look up their API key at once), the tenant bound right
    # after the key lookup. A waiting request holds no thread and no connection, so the bound is
    # the adapt queue: 256 adaptations at 10-70 ms each on one adapt worker are done in 3-18 s,
    # within adapt_wait_seconds. A tenant gets a quarter of a process, so that one busy tenant
    # leaves room for others. The process bound is each API process's own; the tenant bound is
    # shared by every API process through Redis (service/admission.py).
    max_inflight_adaptations: int = Field(default=256, ge=0)
    max_inflight_adaptations_per_tenant: int = Field(default=64, ge=0)
    # Idempotency-Key: a request holds its key while it makes its object; a retry that finds the
    # key held for longer than the lease (its request died) takes it over and finishes the work.
    # Longer than the work done under a key (parsing an upload, storing a row; never the wait
    # for an adaptation, which comes after the task is recorded). Keys expire after the TTL.
    idempotency_lease_seconds: float = 60.0
    idempotency_ttl_hours: float = 24.0
    # The job ledger: a worker holds a job's lease while it runs it, renewing it every third
    # of its length; a job whose lease expired is taken over by another worker, from its last
    # checkpoint, at most max_attempts times in all.
    lease_seconds: float = 30.0
    max_attempts: int = 3
    reconcile_seconds: float = 15.0  # how often each worker re-sends lost and expired work
    # Redis redelivers an unacknowledged message after this long; keep it above lease_seconds.
    visibility_timeout: float = 12 * 3600.0
    task_cache_size: int = 1024  # adapted task states kept in the API process
    # Hot predictions (service/hot.py): ready task, model and API-key rows kept in each API process,
    # dropped at once when any process deletes or revokes one (Redis pub/sub) and after this TTL
    # at the latest; rows kept (about 200 bytes each).
    hot_cache_ttl_seconds: float = Field(default=5.0, ge=0)
    hot_cache_size: int = Field(default=200_000, ge=1)
    # Dynamic batching (service/batching.py): predictions for one model that arrive while its
    # passes are busy wait at most this long for companions, then run as one forward pass.
    predict_batch_window_ms: float = Field(default=2.0, ge=0)
    predict_max_batch: int = Field(default=64, ge=1)
    max_request_bytes: int = 32 * 1024 * 1024
    max_upload_bytes: int = 512 * 1024 * 1024  # POST /v1/datasets (npz or zip)
    # Decoding budgets, checked from image headers before any pixel is decoded. One image:
    # 4096x4096 (a 16-megapixel photo) decodes in 0.1-0.2 s into at most ~70 MB (4 bytes a
    # pixel), so the API never grows by 100 MB for one image. One request: 64 Mi pixels,
    # about 1 s of decoding CPU (images are resized as they are decoded, so this bounds time,
    # not memory). Numbers: 1 Mi values in one request (a batch of 1,300 28x28 images given as
    # lists; PNGs cost no numbers): parsing JSON costs ~56 bytes a value, so the API grows by
    # < 100 MB; also counted as the body streams in (its commas). Over a budget: 413 (a request)
    # or 422 (one image).
    max_image_pixels: int = 4096 * 4096
    max_request_pixels: int = 64 * 1024 * 1024
    max_request_numbers: int = 1024 * 1024
    # Every /v1 route needs an API key when this is set or once any key exists.
    require_auth: bool = False
    # Requests per minute per tenant on /v1 routes, counted in Redis across API processes;
    # 0 turns the limit off. Over it: 429 with Retry-After.
    rate_limit_per_minute: int = 0
    # Connect and read timeout of every Redis call (queue, results, readiness): a Redis that
    # stops answering costs a request a few of these (503 with Retry-After), never a hang.
    redis_timeout_seconds: float = Field(default=1.0, gt=0)
    # PostgreSQL on the API's connections: a statement running longer is cancelled (503), and
    # opening a connection gives up after db_connect_timeout_seconds. Workers get no statement
    # timeout (their statements hold no client waiting), only the connect timeout.
    db_statement_timeout_ms: int = Field(default=5000, ge=0)
    db_connect_timeout_seconds: int = Field(default=5, ge=1)
    # A worker told to stop (SIGTERM) finishes its current work for at most this long, then
    # exits, even when Redis is gone; an interrupted job resumes from its last checkpoint.
    worker_grace_seconds: float = Field(default=10.0, gt=0)
    # Set by `fewshot serve` for the workers it starts (cli/launcher.py): a worker whose parent
    # is no longer this process stops at once (workers/app.py).
    supervisor_pid: int | None = None
    # When set, GET /metrics needs `Authorization: Bearer <token>` (else 401).
    metrics_token: SecretStr | None = None

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
