"""The API's objects as typed, read-only Python objects (each keeps the JSON it came from in `raw`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

from fewshot_client._errors import WaitTimeout

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from fewshot_client._inputs import Inputs


class _JobsCalls(Protocol):
    def get(self, job_id: str) -> Job: ...
    def cancel(self, job_id: str) -> Job: ...
    def events(self, job_id: str, *, stream: bool = ..., after: int = ..., limit: int = ...,
               deadline: float | None = ...) -> Iterator[JobEvent]: ...


class _ModelsCalls(Protocol):
    def adapt(self, model_id: str, inputs: Inputs, labels: Sequence[Any], **options: Any) -> Task: ...


class _TasksCalls(Protocol):
    def get(self, task_id: str) -> Task: ...
    def predict(self, task_id: str, inputs: Inputs, *, binary: bool = False) -> Predictions: ...


class ClientCalls(Protocol):
    """What the objects call back (fewshot_client.Fewshot; declared here so that neither module imports the other)."""

    @property
    def jobs(self) -> _JobsCalls: ...
    @property
    def models(self) -> _ModelsCalls: ...
    @property
    def tasks(self) -> _TasksCalls: ...

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TaskStatus = Literal["adapting", "ready", "failed"]
Modality = Literal["image", "vector"]
FINISHED: tuple[JobStatus, ...] = ("succeeded", "failed", "cancelled")


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _created(raw: dict[str, Any]) -> datetime:
    created = _time(raw.get("created_at"))
    assert created is not None, "the API names every object's created_at"
    return created


@dataclass(frozen=True)
class JobProgress:
    step: int
    total_steps: int
    metrics: dict[str, Any]


@dataclass(frozen=True)
class Job:
    """A meta-training job. `wait()` follows it to its end and returns it as it ended."""

    id: str
    algorithm: str
    dataset: str
    config: dict[str, Any]
    status: JobStatus
    progress: JobProgress
    model_id: str | None
    error: str | None
    attempts: int
    name: str | None
    metadata: dict[str, str]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    raw: dict[str, Any] = field(repr=False, compare=False)
    _client: ClientCalls = field(repr=False, compare=False)

    @classmethod
    def parse(cls, raw: dict[str, Any], client: ClientCalls) -> Job:
        p = raw["progress"]
        return cls(
            id=raw["id"], algorithm=raw["algorithm"], dataset=raw["dataset"], config=raw["config"],
            status=raw["status"], progress=JobProgress(p["step"], p["total_steps"], p.get("metrics") or {}),
            model_id=raw.get("model_id"), error=raw.get("error"), attempts=raw.get("attempts", 0),
            name=raw.get("name"), metadata=raw.get("metadata") or {}, created_at=_created(raw),
            started_at=_time(raw.get("started_at")), finished_at=_time(raw.get("finished_at")), raw=raw, _client=client,
        )

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def refresh(self) -> Job:
        return self._client.jobs.get(self.id)

    def cancel(self) -> Job:
        return self._client.jobs.cancel(self.id)

    def wait(self, timeout: float | None = None, on_event: Callable[[JobEvent], object] | None = None) -> Job:
        """Follows the job's event stream until it ends (calling on_event with each event) and returns the job
        as it ended; check `status` (succeeded, failed, cancelled). Raises WaitTimeout after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for event in self._client.jobs.events(self.id, stream=True, deadline=deadline):
            if on_event is not None:
                on_event(event)
        return self.refresh()


@dataclass(frozen=True)
class JobEvent:
    """A job's status change, progress report, checkpoint or warning; `data` as the API sent it."""

    id: int
    job_id: str
    type: Literal["status", "progress", "checkpoint", "warning"]
    data: dict[str, Any]
    created_at: datetime
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> JobEvent:
        return cls(raw["id"], raw["job_id"], raw["type"], raw.get("data") or {}, _created(raw), raw)


@dataclass(frozen=True)
class Checkpoint:
    id: str
    job_id: str
    step: int
    metrics: dict[str, Any]
    created_at: datetime
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Checkpoint:
        return cls(raw["id"], raw["job_id"], raw["step"], raw.get("metrics") or {}, _created(raw), raw)


@dataclass(frozen=True)
class Dataset:
    """A built-in dataset (its id is its name) or an uploaded one (ds_...)."""

    id: str
    name: str
    builtin: bool
    format: str
    output: Literal["classification", "regression"]
    input_shape: list[int] | None
    description: str | None
    summary: dict[str, Any]
    size_bytes: int | None
    created_at: datetime | None
    raw: dict[str, Any] = field(repr=False, compare=False)
    modality: Modality | None = None  # None from a server older than modalities
    modality_params: dict[str, Any] | None = None  # None where the job's config sets them (e.g. the image size)

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Dataset:
        return cls(
            id=raw["id"], name=raw["name"], builtin=raw["builtin"], format=raw["format"], output=raw["output"],
            input_shape=raw.get("input_shape"), description=raw.get("description"), summary=raw.get("summary") or {},
            size_bytes=raw.get("size_bytes"), created_at=_time(raw.get("created_at")), raw=raw,
            modality=raw.get("modality"), modality_params=raw.get("modality_params"),
        )


@dataclass(frozen=True)
class Model:
    """A meta-trained model: adapt it to a support set with `adapt`."""

    id: str
    job_id: str
    algorithm: str
    dataset: str
    input_shape: list[int]
    output: Literal["classification", "regression"]
    ways: int | None
    output_dim: int | None
    accepts_images: bool
    config: dict[str, Any]
    metrics: dict[str, Any]
    training_tasks: dict[str, str]
    splits: dict[str, Any] | None
    created_at: datetime
    raw: dict[str, Any] = field(repr=False, compare=False)
    _client: ClientCalls = field(repr=False, compare=False)
    modality: Modality | None = None  # None from a server older than modalities
    modality_params: dict[str, Any] = field(default_factory=dict)  # image: channels, size, invert; vector: features, ...
    max_classes: int | None = None  # the most classes a support set may have (classification)

    @classmethod
    def parse(cls, raw: dict[str, Any], client: ClientCalls) -> Model:
        return cls(
            id=raw["id"], job_id=raw["job_id"], algorithm=raw["algorithm"], dataset=raw["dataset"],
            input_shape=raw["input_shape"], output=raw["output"], ways=raw.get("ways"),
            output_dim=raw.get("output_dim"), accepts_images=raw.get("accepts_images", False), config=raw["config"],
            metrics=raw.get("metrics") or {}, training_tasks=raw.get("training_tasks") or {},
            splits=raw.get("splits"), created_at=_created(raw), raw=raw, _client=client,
            modality=raw.get("modality"), modality_params=raw.get("modality_params") or {},
            max_classes=raw.get("max_classes"),
        )

    def adapt(self, inputs: Inputs, labels: Sequence[Any], **options: Any) -> Task:
        return self._client.models.adapt(self.id, inputs, labels, **options)


@dataclass(frozen=True)
class Task:
    """A model adapted to one support set: `predict(inputs)` once `status` is ready."""

    id: str
    model_id: str
    status: TaskStatus
    labels: list[Any] | None
    support_size: int
    options: dict[str, Any]
    error: str | None
    created_at: datetime
    ready_at: datetime | None
    raw: dict[str, Any] = field(repr=False, compare=False)
    _client: ClientCalls = field(repr=False, compare=False)
    conversions: list[str] = field(default_factory=list)  # support inputs converted (in the task adapt returned)

    @classmethod
    def parse(cls, raw: dict[str, Any], client: ClientCalls) -> Task:
        return cls(
            id=raw["id"], model_id=raw["model_id"], status=raw["status"], labels=raw.get("labels"),
            support_size=raw["support_size"], options=raw.get("options") or {}, error=raw.get("error"),
            created_at=_created(raw), ready_at=_time(raw.get("ready_at")), raw=raw, _client=client,
            conversions=raw.get("conversions") or [],
        )

    def predict(self, inputs: Inputs, *, binary: bool = False) -> Predictions:
        """See Fewshot.tasks.predict: binary=True sends numeric inputs as raw float32."""
        return self._client.tasks.predict(self.id, inputs, binary=binary)

    def refresh(self) -> Task:
        return self._client.tasks.get(self.id)

    def wait(self, timeout: float | None = None, poll_interval: float = 0.5) -> Task:
        """Polls an `adapting` task until it is ready or failed; raises WaitTimeout after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        task = self
        while task.status == "adapting":
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"task {self.id} still adapting after {timeout} s")
            time.sleep(poll_interval)
            task = task.refresh()
        return task


@dataclass(frozen=True)
class Prediction:
    """One input's answer: a label (or regression value) and, for classification, its probability."""

    label: Any
    probability: float | None
    probabilities: list[float] | None


@dataclass(frozen=True)
class Predictions:
    """The answers for a request's inputs, in order; iterate for one Prediction per input."""

    task_id: str
    predictions: list[Any]
    probabilities: list[list[float]] | None
    labels: list[Any] | None
    raw: dict[str, Any] = field(repr=False, compare=False)
    conversions: list[str] = field(default_factory=list)  # inputs converted to the model's modality

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Predictions:
        return cls(raw["task_id"], raw["predictions"], raw.get("probabilities"), raw.get("labels"), raw,
                   raw.get("conversions") or [])

    def __len__(self) -> int:
        return len(self.predictions)

    def __getitem__(self, index: int) -> Prediction:
        probs = self.probabilities[index] if self.probabilities is not None else None
        return Prediction(self.predictions[index], max(probs) if probs else None, probs)

    def __iter__(self) -> Iterator[Prediction]:
        return (self[i] for i in range(len(self)))


def as_dict(value: Any) -> dict[str, Any]:
    """A JSON object from the API (a mapping), typed for parsing."""
    if not isinstance(value, dict):
        raise TypeError(f"expected a JSON object from the API, got {type(value).__name__}")
    return cast(dict[str, Any], value)
