"""SQL tables (SQLAlchemy 2): tenants and their keys, datasets, jobs (with their events and
checkpoints), models and tasks survive restarts here."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from store.ids import new_id


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.astimezone(UTC) if value is not None and value.tzinfo else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


# The tenant of a single local user: `fewshot serve` on 127.0.0.1 without API keys.
LOCAL_TENANT = "tnt_local"


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("tnt"))
    name: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiKey(Base):
    """An API key, stored as the sha256 of a high-entropy secret: never the key itself."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("key"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the key's first characters, to tell keys apart
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class IdempotencyKey(Base):
    """The object a creating POST made under an `Idempotency-Key`, per tenant.

    While its request runs, the key is claimed: `claim_token` names the request that holds it
    since `claimed_at`; a claim older than the lease belongs to a dead request and is taken
    over. A key expires `idempotency_ttl_hours` after `created_at` (service/idempotency.py).
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("tenant_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(255))
    route: Mapped[str] = mapped_column(String(255))  # method and path the key was first used on
    request_hash: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str | None] = mapped_column(String(40), default=None)  # None while in progress
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)  # expiry, purge
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    claim_token: Mapped[str] = mapped_column(String(32), default="")


class Dataset(Base):
    """An uploaded dataset, validated; its arrays live in the artifact store."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("ds"))
    tenant_id: Mapped[str] = mapped_column(String(40), default=LOCAL_TENANT, index=True)
    name: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(16))  # npz or images
    output: Mapped[str] = mapped_column(String(16))  # classification or regression
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # input_shape, image format, ...
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)  # examples, classes, tasks, counts
    artifact: Mapped[str] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("job"))
    tenant_id: Mapped[str] = mapped_column(String(40), default=LOCAL_TENANT, index=True)
    algorithm: Mapped[str] = mapped_column(String(32))
    dataset: Mapped[str] = mapped_column(String(64))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)  # resolved: defaults filled in
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer, default=0)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # latest training metrics
    model_id: Mapped[str | None] = mapped_column(String(40), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # leases taken (store/leases.py)
    lease_owner: Mapped[str | None] = mapped_column(String(255), default=None)  # host:pid of the worker
    lease_token: Mapped[str | None] = mapped_column(String(64), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    name: Mapped[str | None] = mapped_column(String(255), default=None, index=True)  # the client's, to find it by
    # The client's string pairs (JobMetadata rows, so that lists filter on them in SQL on every database).
    metadata_items: Mapped[list[JobMetadata]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", order_by="JobMetadata.key"
    )

    @property
    def metadata_pairs(self) -> dict[str, str]:
        return {item.key: item.value for item in self.metadata_items}


class JobMetadata(Base):
    """One of a job's metadata pairs (at most 16 a job; keys up to 64 characters, values up to 512)."""

    __tablename__ = "job_metadata"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(512), index=True)


class Model(Base):
    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("mdl"))
    tenant_id: Mapped[str] = mapped_column(String(40), default=LOCAL_TENANT, index=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"))
    algorithm: Mapped[str] = mapped_column(String(32))
    dataset: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # models.episodes.ProblemSpec
    learner_config: Mapped[dict[str, Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # meta-test evaluation
    artifact: Mapped[str] = mapped_column(String(255))  # key of theta in the artifact store
    # The classes (or dataset tasks) of meta-train, meta-val and meta-test (models.splits.SplitNames);
    # None for datasets without classes to split, and for models made before splits were recorded.
    splits: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Task(Base):
    __tablename__ = "tasks"
    # The adapt worker's batch query (a model's tasks still adapting, oldest first) and the
    # reconciler's: without it, 100,000 stored tasks of one model cost each adaptation 15 ms.
    __table_args__ = (Index("ix_tasks_model_status_created", "model_id", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("tsk"))
    tenant_id: Mapped[str] = mapped_column(String(40), default=LOCAL_TENANT, index=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(128), default=None)  # a multi-task model's training task
    status: Mapped[str] = mapped_column(String(16), default="adapting")  # adapting, ready, failed
    labels: Mapped[list[Any] | None] = mapped_column(JSON, default=None)  # classification vocabulary
    support_size: Mapped[int] = mapped_column(Integer)
    scalar_targets: Mapped[bool] = mapped_column(Boolean, default=False)  # regression: numbers, not lists
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # adaptation overrides
    artifact: Mapped[str | None] = mapped_column(String(255), default=None)  # phi
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # The support set the API took (`x`, `y`), as a safetensors file's bytes, written in the row's
    # own insert and read by the adapt worker with the row: no file or object-store round trip on
    # either side. Deferred: reading a task row does not read it. None for tasks stored before
    # migration 0006 (their support set is the artifact at store.artifacts.support_key) and for a
    # multi-task model's training tasks (none).
    support: Mapped[bytes | None] = mapped_column(LargeBinary, default=None, deferred=True)


class JobEvent(Base):
    """What happened to a job, in order: status changes, progress, checkpoints."""

    __tablename__ = "job_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    type: Mapped[str] = mapped_column(String(16))  # status, progress, checkpoint, warning
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Checkpoint(Base):
    """The learner's state at one step of a job, saved in the artifact store."""

    __tablename__ = "checkpoints"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("ckpt"))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    artifact: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


def record_event(session: Session, job_id: str, type_: str, **data: Any) -> None:
    """Append one event to a job's history (committed with the session)."""
    session.add(JobEvent(job_id=job_id, type=type_, data=data))


# Connections per process: as many as the API's thread pool (40) may use at once. A request
# that finds all of them busy waits at most pool_timeout and then answers 503 `overloaded`
# (service/errors.py), never hangs. PostgreSQL's max_connections must cover 40 per API process
# plus the workers' few.
POOL: dict[str, Any] = {"pool_size": 20, "max_overflow": 20, "pool_timeout": 5.0}


@functools.lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # A pool as deep as the API's thread pool is busy: connections beyond it are opened and
        # closed per request, and each opening runs the pragmas below (seen in the serving profile).
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **POOL)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")  # API and workers read and write at once
            # With WAL, NORMAL never corrupts the file; a power cut may lose the last commits.
            # FULL fsyncs every commit: 6.4 ms against 0.4 ms a commit here, twice per adaptation.
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
    else:
        # A server that does not answer costs a connection attempt this long, not the OS's minutes
        # (a connect_timeout in the URL, as with_timeouts sets for the API, takes precedence).
        connect_args = {} if "connect_timeout=" in url else {"connect_timeout": DEFAULT_CONNECT_TIMEOUT_S}
        engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args, **POOL)
    return engine


DEFAULT_CONNECT_TIMEOUT_S = 10


def with_timeouts(url: str, statement_timeout_ms: int, connect_timeout_s: int) -> str:
    """PostgreSQL: `url` whose connections give up connecting after `connect_timeout_s` and cancel any
    statement running longer than `statement_timeout_ms` (0: never); other databases: `url` itself.

    The timeouts travel in the URL (libpq `connect_timeout` and `options=-c statement_timeout=...`),
    so an engine made from it, and every session on that engine, has them.
    """
    if not url.startswith("postgresql"):
        return url
    parsed = make_url(url)
    options = " ".join(part for part in (parsed.query.get("options", ""), f"-c statement_timeout={statement_timeout_ms}") if part)
    query = {**parsed.query, "connect_timeout": str(connect_timeout_s), "options": options}
    return parsed.set(query=query).render_as_string(hide_password=False)


def init_db(url: str) -> Engine:
    """The engine, with the schema brought to the latest migration (store/schema.py)."""
    from store.schema import upgrade

    engine = get_engine(url)
    upgrade(engine)
    return engine


@functools.lru_cache(maxsize=8)
def session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session committed on success and rolled back on error."""
    session = session_factory(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
