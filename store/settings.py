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
    # torch intra-op threads per process; on a 2-core machine the API and each worker take 1
    # so that they never oversubscribe the cores.
    torch_threads: int = 1
    # How long POST /v1/models/{id}/tasks waits for the worker's adaptation before 202.
    adapt_wait_seconds: float = 30.0
    task_cache_size: int = 1024  # adapted task states kept in the API process
    max_request_bytes: int = 32 * 1024 * 1024

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
        return self.data_dir / "artifacts"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def omniglot_path(self) -> Path:
        return self.omniglot_dir or self.data_dir / "datasets" / "omniglot"

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
