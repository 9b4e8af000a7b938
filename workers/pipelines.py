"""The work itself, as plain functions of ids: testable without a broker or a worker."""

from __future__ import annotations

import copy
import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from sqlalchemy import Connection, select, update

from models.checkpoint import capture, restore
from models.device import resolve_device
from models.episodes import ProblemSpec, TaskFamily
from models.learners import LEARNERS, AdaptOptions, AdaptRequest, Learner, Params, build_learner, load_learner
from models.learners.base import AdaptationDiverged, check_support_outputs
from models.multitask.evaluation import training_task_metrics
from models.multitask.families import MultiTaskFamily
from models.recipe import DataSources, Recipe, build_tasks, resolve
from models.training import TrainingDiverged, Validation, evaluate, meta_train
from store.adaptation_claims import Claims, ClaimsUnavailable
from store.adaptation_events import Announcement
from store.artifacts import (
    ArtifactStore,
    artifact_store,
    checkpoint_key,
    dataset_key,
    deserialize,
    state_key,
    support_key,
    task_prefix,
    theta_key,
)
from store.db import Checkpoint, Job, Model, Task, get_engine, record_event, session_scope, utcnow
from store.ids import new_id
from store.leases import Heartbeat, Lease, acquire
from store.settings import Settings

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.5


class JobCancelled(Exception):
    pass


class LeaseLost(Exception):
    """Another worker took the job over (this one was presumed lost): stop, write nothing."""


class ProgressRecorder:
    """on_step callback: writes step and metrics to the job row (and a progress event) at most
    every 0.5 s and saves a training checkpoint every `checkpoint_every` steps, all only while
    this worker holds the job's lease; stops the run when the job was cancelled or the lease lost."""

    def __init__(
        self, lease: Lease, db_url: str, checkpoint: Callable[[int], str] | None = None, checkpoint_every: int = 0
    ) -> None:
        self.lease = lease
        self.job_id = lease.job_id
        self.db_url = db_url
        self.last = 0.0
        self.checkpoint = checkpoint  # saves the run's state at a step, returns its artifact key
        self.checkpoint_every = checkpoint_every
        self.started = time.monotonic()  # progress events carry the seconds since, for learning curves

    def __call__(self, step: int, total: int, metrics: dict[str, float]) -> None:
        lost = self.lease.lost.is_set()  # the heartbeat could not renew: look at the row now
        now = time.monotonic()
        due = self.checkpoint is not None and self.checkpoint_every > 0 and step % self.checkpoint_every == 0
        validated = metrics.get("val_step") == step  # every validation reaches the events
        if now - self.last < PROGRESS_INTERVAL_S and step != total and not due and not lost and not validated:
            return
        self.last = now
        with session_scope(self.db_url) as session:
            job = session.get(Job, self.job_id)
            if job is None or job.status == "cancelled":
                raise JobCancelled
            if lost or job.lease_token != self.lease.token:
                raise LeaseLost
            job.step, job.total_steps, job.metrics = step, total, dict(metrics)
            record_event(session, self.job_id, "progress", step=step, total_steps=total, metrics=dict(metrics),
                         elapsed_s=round(now - self.started, 3))
            if due:
                assert self.checkpoint is not None
                key = self.checkpoint(step)
                ckpt = Checkpoint(job_id=self.job_id, step=step, metrics=dict(metrics), artifact=key)
                session.add(ckpt)
                session.flush()
                record_event(session, self.job_id, "checkpoint", checkpoint_id=ckpt.id, step=step, metrics=dict(metrics))


def train_job(job_id: str, settings: Settings) -> str | None:
    """Meta-train the job's learner under its lease, evaluate it on meta-test tasks, store the model.

    A job taken over from a lost worker resumes from its latest checkpoint. Returns the model
    id, or None when this call did not finish the job (its row says why).
    """
    url = settings.sqlalchemy_url
    lease = acquire(url, job_id, settings.lease_seconds, settings.max_attempts)
    if lease is None:
        log.info("job %s not started here: finished, held by another worker, or out of attempts", job_id)
        return None
    with Heartbeat(url, lease):
        return _run_training(lease, settings)


def _run_training(lease: Lease, settings: Settings) -> str | None:
    url, job_id = settings.sqlalchemy_url, lease.job_id
    with session_scope(url) as session:
        job = session.get(Job, job_id)
        assert job is not None
        algorithm, dataset, config, tenant = job.algorithm, job.dataset, dict(job.config), job.tenant_id
        latest = session.scalars(
            select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.step.desc()).limit(1)
        ).first()
        resume_key = latest.artifact if latest is not None else None
    try:
        recipe = resolve(algorithm, dataset, config)
        store = artifact_store(settings)
        sources = DataSources(
            settings.omniglot_path, settings.cache_dir, settings.mnist_path,
            dataset_file=lambda dataset_id: store.local_file(dataset_key(dataset_id)),
        )
        tasks = build_tasks(recipe, sources)
        cfg = recipe.training
        if cfg.evaluated_on == "val" and resume_key is None:
            _warn(url, job_id, "test_fraction is 0: no classes are held out for meta-test, so the model's final metrics "
                  "come from its meta-val classes (metrics.evaluated_on is \"val\")", param="config.test_fraction")
        torch.manual_seed(cfg.seed)  # the initial theta is part of the seeded run
        learner = build_learner(algorithm, tasks.spec, LEARNERS[algorithm].config_for(recipe.learner, tasks))
        learner.to(resolve_device(settings.device))  # before restore: optimizer state follows the params
        generator = torch.Generator().manual_seed(cfg.seed)
        validation = _validation(tasks, recipe)
        start_step = 0
        if resume_key is not None:
            tensors, metadata = store.load_with_metadata(resume_key)
            start_step, generator = restore(learner, tensors, metadata)
            if validation is not None:
                validation.load_checkpoint(tensors, metadata)
            log.info("job %s resumes from its checkpoint at step %d (attempt %d)", job_id, start_step, lease.attempt)

        def save_checkpoint(step: int) -> str:
            ckpt = capture(learner, generator, step, validation.to_checkpoint() if validation is not None else None)
            store.save(checkpoint_key(job_id, step), ckpt.tensors, ckpt.metadata)
            return checkpoint_key(job_id, step)

        recorder = ProgressRecorder(lease, url, save_checkpoint, cfg.checkpoint_every)
        last_step = meta_train(learner, tasks, cfg.steps, cfg.meta_batch_size, cfg.seed, recorder, start_step, generator,
                               divergence_factor=cfg.divergence_factor, validation=validation)
        if last_step < cfg.steps and validation is not None:
            _warn(url, job_id, f"stopped early at step {last_step}: no better meta-val score in {validation.patience} "
                  f"evaluations since step {validation.best_step}", param="config.early_stopping_patience",
                  step=last_step)
        metrics = _evaluate(learner, tasks, recipe)
        metrics.update(_kept(validation, last_step))
        model_id = new_id("mdl")
        key = theta_key(model_id)
        store.save(key, learner.state())
        with session_scope(url) as session:
            job = session.get(Job, job_id, with_for_update=True)  # a cancel waits for this, or this for it
            if job is None or job.status != "running" or job.lease_token != lease.token:
                store.delete_prefix(f"models/{model_id}")
                raise JobCancelled if job is None or job.status == "cancelled" else LeaseLost
            session.add(
                Model(
                    id=model_id, tenant_id=tenant, job_id=job_id, algorithm=algorithm, dataset=dataset,
                    spec={**tasks.spec.to_json(), "max_classes": learner.max_classes}, learner_config=learner.config.to_json(),
                    metrics=metrics, artifact=key, splits=_splits_json(tasks),
                )
            )
            session.flush()  # the model row before its tasks' rows
            session.add_all(_training_tasks(model_id, tenant, learner, tasks, store))
            job.status, job.model_id, job.finished_at, job.lease_token = "succeeded", model_id, utcnow(), None
            record_event(session, job_id, "status", status="succeeded", model_id=model_id, metrics=metrics)
        log.info("job %s succeeded: model %s %s", job_id, model_id, metrics)
        return model_id
    except JobCancelled:
        log.info("job %s cancelled", job_id)
        return None
    except LeaseLost:
        log.warning("job %s: lease lost to another worker; this run stops and writes nothing", job_id)
        return None
    except Exception as exc:
        log.exception("job %s failed", job_id)
        with session_scope(url) as session:
            job = session.get(Job, job_id)
            if job is not None and job.status == "running" and job.lease_token == lease.token:
                error = str(exc) if isinstance(exc, TrainingDiverged) else f"{type(exc).__name__}: {exc}"
                job.status, job.error, job.finished_at = "failed", error, utcnow()
                job.lease_token = None
                record_event(session, job_id, "status", status="failed", error=job.error)
        return None


def _warn(url: str, job_id: str, message: str, **data: Any) -> None:
    """Log a warning about the job and record it in the job's events."""
    log.warning("job %s: %s", job_id, message)
    with session_scope(url) as session:
        record_event(session, job_id, "warning", message=message, **data)


def _validation(tasks: TaskFamily, recipe: Recipe) -> Validation | None:
    """Meta-val scoring while training, as the config asks; None when it does not, or there are
    no meta-val classes (val_fraction 0)."""
    cfg = recipe.training
    if not cfg.validates:
        return None
    assert cfg.eval_every is not None and cfg.val_episodes is not None  # TrainingConfig filled them
    return Validation(tasks, cfg.val_episodes, cfg.seed, cfg.eval_every, cfg.early_stopping_patience, cfg.keep)


def _kept(validation: Validation | None, last_step: int) -> dict[str, Any]:
    """Which state the model is (kept: "best" or "last", and its step) and its best meta-val score."""
    if validation is None:
        return {"kept": "last", "kept_step": last_step}
    kept_step = validation.kept_step
    out: dict[str, Any] = {"kept": "last" if kept_step is None else "best", "kept_step": kept_step or last_step}
    out.update({k: v for k, v in validation.latest.items() if k.startswith("best_val_")})
    return out


def _splits_json(tasks: TaskFamily) -> dict[str, Any] | None:
    """Which classes (or dataset tasks) went to meta-train, meta-val and meta-test, by name."""
    names = tasks.split_names()
    return None if names is None else names.to_json()


def _evaluate(learner: Learner, tasks: Any, recipe: Recipe) -> dict[str, Any]:
    """Final metrics on meta-test tasks (meta-val ones when test_fraction is 0), saying which."""
    cfg = recipe.training
    split = cfg.evaluated_on
    metrics: dict[str, Any] = dict(evaluate(learner, tasks, cfg.eval_episodes, cfg.seed, split).to_json())
    metrics["evaluated_on"] = split
    if learner.spec.output == "regression" and learner.zero_steps_is_unadapted:
        unadapted = evaluate(learner, tasks, cfg.eval_episodes, cfg.seed, split, options=AdaptOptions(inner_steps=0))
        metrics["mse_unadapted"] = unadapted.mean
    metrics.update(training_task_metrics(learner, tasks, examples=1000, seed=cfg.seed))
    return metrics


def _training_tasks(model_id: str, tenant: str, learner: Learner, tasks: Any, store: ArtifactStore) -> list[Task]:
    """A ready task per training task of a multi-task model (phi saved), named as in the dataset."""
    if not isinstance(tasks, MultiTaskFamily):
        return []
    rows = []
    for index, (name, phi) in enumerate(learner.training_task_states().items()):
        task_id = new_id("tsk")
        store.save(state_key(task_id), phi)
        rows.append(Task(
            id=task_id, tenant_id=tenant, model_id=model_id, name=name, status="ready", labels=tasks.task_labels(index),
            support_size=0, scalar_targets=learner.spec.output == "regression" and learner.spec.output_dim == 1,
            artifact=state_key(task_id), ready_at=utcnow(),
        ))
    return rows


@functools.lru_cache(maxsize=8)
def _cached_learner(
    model_id: str, store: ArtifactStore, algorithm: str, spec_json: str, config_json: str, device: str
) -> Learner:
    theta = store.load(theta_key(model_id))
    learner = load_learner(algorithm, ProblemSpec.from_json(json.loads(spec_json)), json.loads(config_json), theta)
    return learner.to(resolve_device(device))


def model_learner(model: Model, settings: Settings) -> Learner:
    """The model's learner with theta loaded; models never change, so this is cached."""
    return _cached_learner(
        model.id, artifact_store(settings), model.algorithm,
        json.dumps(model.spec, sort_keys=True), json.dumps(model.learner_config, sort_keys=True), settings.device,
    )


def warm_process(settings: Settings) -> None:
    """Pay a fresh worker process's one-time costs before its first task instead of inside it.

    Building the first torch optimizer in a process imports torch._dynamo (3 to 5 s on a busy
    2-core machine), and every learner builds one; the first ORM queries compile their SQL.
    Measured in benchmarks/http_adaptation.py (the cold adaptation).
    """
    start = time.perf_counter()
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])
    with session_scope(settings.sqlalchemy_url) as session:
        session.get(Task, "tsk_warm")
        session.get(Model, "mdl_warm")
    log.info("worker process warmed up in %.2f s", time.perf_counter() - start)


def warm_model(model_id: str, settings: Settings) -> bool:
    """Load the model's learner into this process's cache and adapt a copy of it once to a blank
    support set, so that the model's first real task pays neither. Best effort: returns whether
    it warmed; a model it cannot warm adapts as before, paying the load in its first task."""
    with session_scope(settings.sqlalchemy_url) as session:
        model = session.get(Model, model_id)
    if model is None:
        return False
    try:
        learner = model_learner(model, settings)
        spec = learner.spec
        if spec.output == "classification":
            n = max(spec.n_way, 2)
            x, y = torch.zeros(n, *spec.input_shape), torch.arange(n)
        else:
            x, y = torch.zeros(5, *spec.input_shape), torch.zeros(5, spec.output_dim)
        # On a copy: adapting may change the module's mode or statistics, and the cached learner
        # serves real tasks. One step warms the same code as many, and keeps the worker free sooner.
        copy.deepcopy(learner).adapt(x.to(learner.device), y.to(learner.device), AdaptOptions(inner_steps=1))
    except Exception:
        log.warning("model %s could not be warmed; its first task loads it", model_id, exc_info=True)
        return False
    return True


PROBE_EXAMPLES = 32  # support examples predicted to check an adapted state


def check_adapted(learner: Learner, phi: dict[str, torch.Tensor], support_x: torch.Tensor, support_y: torch.Tensor) -> None:
    """Refuse a state with non-finite values, or one whose predictions for its own support
    inputs are not finite (check_support_outputs); learners whose adapt() checked those outputs
    already (checks_support_outputs: the MAML family, whose support pass records the batch-norm
    statistics) are not asked to predict them again."""
    if not all_finite(phi):
        broken = sorted(k for k, v in phi.items() if v.is_floating_point() and not torch.isfinite(v).all())
        raise AdaptationDiverged(
            f"adaptation diverged: non-finite values in {', '.join(broken[:3])}; try a smaller inner_lr"
        )
    if learner.checks_support_outputs:
        return
    with torch.no_grad():
        outputs = learner.predict(phi, support_x[:PROBE_EXAMPLES])
    check_support_outputs(outputs, support_y)


def all_finite(tensors: dict[str, torch.Tensor]) -> bool:
    """Whether every floating-point value of every tensor is finite, in a few fused calls (the
    largest magnitude of each tensor; a NaN anywhere makes its maximum NaN): 0.26 ms for a Conv4-64
    task's 26 tensors where one isfinite().all() per tensor took 0.69 (an ad-hoc measurement)."""
    values = [v.detach().reshape(-1) for v in tensors.values() if v.is_floating_point() and v.numel()]
    if not values:
        return True
    return bool(torch.stack(torch._foreach_max(torch._foreach_abs(values))).isfinite().all())


def adapt_task(task_id: str, settings: Settings) -> str:
    """adapt_tasks, and the final status of `task_id` ("adapting" while another batch holds it)."""
    return adapt_tasks(task_id, settings).get(task_id, "adapting")


Settled = Callable[[list[Announcement]], None]  # told each chunk's outcomes once they are recorded


def adapt_tasks(task_id: str, settings: Settings, settled: Settled | None = None) -> dict[str, str]:
    """Adapt the task's model to its stored support set, and in the same batch the model's other
    tasks waiting to adapt (up to settings.adapt_batch_max in all, oldest first, each claimed in
    Redis: store/adaptation_claims.py). The batch runs in chunks of settings.adapt_chunk tasks,
    each through one call of the learner's adapt_many, then recorded in one transaction and
    passed to `settled` (the worker announces them), so that the first tasks of a big batch are
    answered without waiting for the last. Each task is still stored, checked, failed and
    recorded on its own. Returns the final status of every task this call settled (task id ->
    status); empty when another batch holds `task_id`."""
    url = settings.sqlalchemy_url
    started = time.perf_counter()
    claims = Claims(settings.redis_url) if settings.redis_url and settings.adapt_batch_max > 1 else None
    with get_engine(url).connect() as conn:  # reads only: the task's row, then its model's waiting tasks
        row = conn.execute(
            select(Task.status, Task.options, Task.model_id, Task.support).where(Task.id == task_id)
        ).first()
        if row is None:
            log.warning("task %s does not exist; message dropped", task_id)
            return {task_id: "missing"}
        status, task_options, model_id, support = row
        if status != "adapting":
            return {task_id: status}
        options = {task_id: AdaptOptions(**task_options)}
        supports: dict[str, bytes | None] = {task_id: support}  # the others' once claimed, chunk by chunk
        waiting = _waiting_tasks(conn, model_id, task_id, settings.adapt_batch_max - 1) if claims is not None else {}
    try:
        model = _model_row(url, model_id)
    except LookupError:  # deleted with its tasks since the read
        return {task_id: "missing"}
    try:
        if claims is not None:
            try:
                if not claims.take([task_id]):  # its own first: a batch that cannot have it takes no others
                    log.info("task %s is in another worker's batch", task_id)
                    return {}
                options.update({t: waiting[t] for t in claims.take(list(waiting))})
            except ClaimsUnavailable as exc:
                log.warning("task %s adapts alone: adaptation claims unavailable (%s)", task_id, exc)
        marks = [("start", started), ("ledger-read", time.perf_counter())]
        statuses: dict[str, str] = {}
        ids = list(options)
        for i in range(0, len(ids), settings.adapt_chunk):
            chunk_ids = ids[i : i + settings.adapt_chunk]
            if unread := [t for t in chunk_ids if t not in supports]:
                supports.update(_supports(url, unread))
            queued = {t: _Queued(options[t], supports.pop(t, None)) for t in chunk_ids}
            chunk = _adapt_batch(model, queued, settings, marks)
            statuses.update({t: outcome.status for t, outcome in chunk.items()})
            if settled is not None:
                settled(list(chunk.values()))
            marks = [("start", time.perf_counter())]
        return statuses
    finally:
        if claims is not None:
            claims.release()


@functools.lru_cache(maxsize=256)
def _model_row(url: str, model_id: str) -> Model:
    """The model's row, read once per process: a model never changes, and a deleted model's tasks
    are gone with it, so no task asks for it again. LookupError (not cached) when there is none."""
    with session_scope(url) as session:
        model = session.get(Model, model_id)
    if model is None:
        raise LookupError(f"model {model_id} does not exist")
    return model


@dataclass(frozen=True)
class _Queued:
    """A task waiting to adapt, as its row holds it."""

    options: AdaptOptions
    support: bytes | None  # its support set as safetensors bytes; None: the artifact at support_key (older tasks)


def _waiting_tasks(conn: Connection, model_id: str, but: str, limit: int) -> dict[str, AdaptOptions]:
    """Up to `limit` of the model's tasks waiting to adapt, oldest first, other than `but`
    (their support sets are read once claimed: most of a burst's messages claim none)."""
    if limit < 1:
        return {}
    rows = conn.execute(
        select(Task.id, Task.options)
        .where(Task.model_id == model_id, Task.status == "adapting", Task.id != but)
        .order_by(Task.created_at, Task.id).limit(limit)
    ).all()
    return {task_id: AdaptOptions(**opts) for task_id, opts in rows}


def _supports(url: str, task_ids: list[str]) -> dict[str, bytes | None]:
    """The support sets stored in these tasks' rows (None: stored as a file, before migration 0006);
    a task deleted since it was claimed is left out."""
    with get_engine(url).connect() as conn:
        rows = conn.execute(select(Task.id, Task.support).where(Task.id.in_(task_ids))).all()
    return {task_id: support for task_id, support in rows}


def _adapt_batch(
    model: Model, queued: dict[str, _Queued], settings: Settings, marks: list[tuple[str, float]]
) -> dict[str, Announcement]:
    """Adapt, check and store a chunk of claimed tasks of one model; record each task's outcome.
    `marks`: the stage ends so far, for the timing line each task logs (its chunk's stages)."""
    store = artifact_store(settings)
    try:
        learner = model_learner(model, settings)
    except Exception as exc:
        log.exception("model %s could not be loaded to adapt %d tasks", model.id, len(queued))
        return _record(settings, store, {task_id: _failure(exc) for task_id in queued}, marks)
    marks.append(("learner", time.perf_counter()))
    outcomes: dict[str, dict[str, Any]] = {}
    requests: dict[str, AdaptRequest] = {}
    for task_id, task in queued.items():
        try:
            support = deserialize(task.support) if task.support is not None else store.load(support_key(task_id))
            requests[task_id] = AdaptRequest(support["x"].to(learner.device), support["y"].to(learner.device), task.options)
        except Exception as exc:
            log.exception("support set of task %s could not be read", task_id)
            outcomes[task_id] = _failure(exc)
    marks.append(("support", time.perf_counter()))
    phis = _adapt_each(learner, list(requests.values()))
    marks.append(("adapt", time.perf_counter()))
    for (task_id, request), phi in zip(requests.items(), phis, strict=True):
        try:
            if isinstance(phi, Exception):
                raise phi
            check_adapted(learner, phi, request.support_x, request.support_y)
            store.save(state_key(task_id), phi)
            outcomes[task_id] = {"status": "ready", "error": None, "artifact": state_key(task_id), "ready_at": utcnow()}
        except Exception as exc:
            log.warning("adaptation of task %s failed", task_id, exc_info=exc)
            outcomes[task_id] = _failure(exc)
    marks.append(("save", time.perf_counter()))
    return _record(settings, store, outcomes, marks)


def _record(
    settings: Settings, store: ArtifactStore, outcomes: dict[str, dict[str, Any]], marks: list[tuple[str, float]]
) -> dict[str, Announcement]:
    """Write each task's outcome in one transaction (a task deleted meanwhile is `missing`, and its
    files go), log each task's timing line; returns each task's outcome as recorded (what the
    worker announces)."""
    recorded: dict[str, Announcement] = {}
    with get_engine(settings.sqlalchemy_url).begin() as conn:  # one transaction, one statement per task, no read first
        for task_id, outcome in outcomes.items():
            result = conn.execute(update(Task).where(Task.id == task_id).values(**outcome))
            recorded[task_id] = (
                Announcement(task_id, outcome["status"], outcome.get("error"), outcome.get("ready_at"))
                if result.rowcount else Announcement(task_id, "missing")  # deleted while adapting: its files go
            )
    for task_id, announcement in recorded.items():
        if announcement.status == "missing":
            store.delete_prefix(task_prefix(task_id))
    marks.append(("ledger-write", time.perf_counter()))
    stages = ", ".join(f"{name} {(t - marks[i][1]) * 1000:.2f}" for i, (name, t) in enumerate(marks[1:]))
    for task_id, announcement in recorded.items():  # the chunk's stages, on every task's line
        log.info("task %s %s in %.2f ms: %s, tasks-in-chunk %d", task_id, announcement.status,
                 (marks[-1][1] - marks[0][1]) * 1000, stages, len(recorded))
    return recorded


def _adapt_each(learner: Learner, requests: list[AdaptRequest]) -> list[Params | Exception]:
    """Each request's phi through one adapt_many, or, when that raises (one bad support set fails
    the whole call), one adapt per request, so that only the bad ones fail."""
    if len(requests) > 1:
        try:
            return list(learner.adapt_many(requests))
        except Exception:
            log.warning("batched adaptation of %d tasks failed; adapting them one by one", len(requests), exc_info=True)
    results: list[Params | Exception] = []
    for r in requests:
        try:
            results.append(learner.adapt(r.support_x, r.support_y, r.options))
        except Exception as exc:
            results.append(exc)
    return results


def _failure(exc: BaseException) -> dict[str, Any]:
    return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
