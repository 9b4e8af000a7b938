"""`fewshot jobs|models|tasks|datasets|keys ...` and `fewshot predict`: the API from a terminal.

Built on the fewshot_client SDK, talking to FEWSHOT_URL (default http://127.0.0.1:8000) with
FEWSHOT_API_KEY; `keys create` alone writes to the database directly. Every command takes
--json: the API's objects as JSON, for scripts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from fewshot_client import DEFAULT_URL, Dataset, Job, Model, Task

from cli.job_watch import watch_job
from cli.output import (
    JsonOption,
    KeyOption,
    UrlOption,
    api,
    listed,
    print_json,
    print_object,
    print_table,
    short,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LimitOption = Annotated[int, typer.Option(min=0, help="show at most this many; 0 for all (fetched page by page)")]

jobs_cli = typer.Typer(help="meta-training jobs", no_args_is_help=True)
models_cli = typer.Typer(help="meta-trained models", no_args_is_help=True)
tasks_cli = typer.Typer(help="tasks adapted to a support set", no_args_is_help=True)
datasets_cli = typer.Typer(help="datasets: built-in and uploaded", no_args_is_help=True)
keys_cli = typer.Typer(help="API keys (written to the database directly)", no_args_is_help=True)


def _pairs(values: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{option} takes KEY=VALUE, got {value!r}")
        pairs[key] = rest
    return pairs


# jobs ---------------------------------------------------------------------------------------


@jobs_cli.command("create")
def jobs_create(
    algorithm: Annotated[str, typer.Option(help="maml, fomaml, metasgd, anil, protonet, finetune, ...")],
    dataset: Annotated[str, typer.Option(help="a built-in name or an uploaded ds_ id")],
    config: Annotated[str, typer.Option(help="config as a JSON object")] = "{}",
    name: Annotated[str | None, typer.Option(help="a name to find the job by")] = None,
    metadata: Annotated[list[str] | None, typer.Option(help="KEY=VALUE, repeatable")] = None,
    watch: Annotated[bool, typer.Option(help="follow the job until it ends")] = False,
    idempotency_key: Annotated[str | None, typer.Option(help="retry-safe submission")] = None,
    as_json: JsonOption = False, url: UrlOption = DEFAULT_URL, api_key: KeyOption = None,
) -> None:
    """Submit a meta-training job; prints its id (the job with --json)."""
    try:
        cfg = json.loads(config)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--config is not JSON: {exc}") from None
    pairs = _pairs(metadata or [], "--metadata") if metadata else None
    with api(url, api_key) as fs:
        job = fs.jobs.create(algorithm, dataset, cfg, name=name, metadata=pairs, idempotency_key=idempotency_key)
        if as_json:
            print_json(job.raw)
        else:
            typer.echo(f"{job.id} {job.status}")
        if watch:
            watch_job(fs, job.id, as_json)


def _job_row(j: Job) -> list[Any]:
    return [j.id, j.name, j.algorithm, j.dataset, j.status, f"{j.progress.step}/{j.progress.total_steps}", j.model_id]


@jobs_cli.command("list")
def jobs_list(
    status: Annotated[str | None, typer.Option(help="queued, running, succeeded, failed, cancelled")] = None,
    name: Annotated[str | None, typer.Option(help="only jobs of this name")] = None,
    metadata: Annotated[list[str] | None, typer.Option(help="KEY=VALUE: only jobs with it; repeatable")] = None,
    limit: LimitOption = 20,
    as_json: JsonOption = False, url: UrlOption = DEFAULT_URL, api_key: KeyOption = None,
) -> None:
    """Jobs, newest first."""
    with api(url, api_key) as fs:
        pairs = _pairs(metadata or [], "--metadata") if metadata else None
        jobs = listed(fs.jobs.list(limit=min(limit or 100, 100), status=status, name=name, metadata=pairs),  # type: ignore[arg-type]
                      limit)
    if as_json:
        print_json([j.raw for j in jobs])
    else:
        print_table(["id", "name", "algorithm", "dataset", "status", "step", "model"], [_job_row(j) for j in jobs])


@jobs_cli.command("get")
def jobs_get(job_id: str, as_json: JsonOption = False, url: UrlOption = DEFAULT_URL, api_key: KeyOption = None) -> None:
    """One job."""
    with api(url, api_key) as fs:
        print_object(fs.jobs.get(job_id).raw, as_json)


@jobs_cli.command("cancel")
def jobs_cancel(job_id: str, as_json: JsonOption = False, url: UrlOption = DEFAULT_URL, api_key: KeyOption = None) -> None:
    """Stop a queued or running job."""
    with api(url, api_key) as fs:
        job = fs.jobs.cancel(job_id)
    print_json(job.raw) if as_json else typer.echo(f"{job.id} {job.status}")


@jobs_cli.command("events")
def jobs_events(job_id: str, as_json: JsonOption = False, url: UrlOption = DEFAULT_URL, api_key: KeyOption = None) -> None:
    """The job's events so far."""
    with api(url, api_key) as fs:
        events = list(fs.jobs.events(job_id))
    if as_json:
        print_json([e.raw for e in events])
    else:
        print_table(["id", "type", "data", "at"], [[e.id, e.type, short(e.data), e.created_at] for e in events])


@jobs_cli.command("checkpoints")
def jobs_checkpoints(job_id: str, as_json: JsonOption = False, url: UrlOption = DEFAULT_URL,
                     api_key: KeyOption = None) -> None:
    """The checkpoints the job wrote."""
    with api(url, api_key) as fs:
        checkpoints = list(fs.jobs.checkpoints(job_id))
    if as_json:
        print_json([c.raw for c in checkpoints])
    else:
        print_table(["id", "step", "metrics"], [[c.id, c.step, short(c.metrics)] for c in checkpoints])


@jobs_cli.command("watch")
def jobs_watch(job_id: str, as_json: JsonOption = False, url: UrlOption = DEFAULT_URL, api_key: KeyOption = None) -> None:
    """Progress with an ETA until the job ends, then the model's metrics; exits 1 unless it succeeded.
    With --json: each event as a JSON line, then the final job."""
    with api(url, api_key) as fs:
        watch_job(fs, job_id, as_json)


# models -------------------------------------------------------------------------------------


def _model_row(m: Model) -> list[Any]:
    return [m.id, m.algorithm, m.dataset, m.output, m.input_shape, short(m.metrics)]


@models_cli.command("list")
def models_list(limit: LimitOption = 20, as_json: JsonOption = False, url: UrlOption = DEFAULT_URL,
                api_key: KeyOption = None) -> None:
    """Meta-trained models, newest first."""
    with api(url, api_key) as fs:
        models = listed(fs.models.list(limit=min(limit or 100, 100)), limit)
    if as_json:
        print_json([m.raw for m in models])
    else:
        print_table(["id", "algorithm", "dataset", "output", "input shape", "metrics"], [_model_row(m) for m in models])


@models_cli.command("get")
def models_get(model_id: str, as_json: JsonOption = False, url: UrlOption = DEFAULT_URL, api_key: KeyOption = None) -> None:
    """One model."""
    with api(url, api_key) as fs:
        print_object(fs.models.get(model_id).raw, as_json)


@models_cli.command("delete")
def models_delete(model_id: str, as_json: JsonOption = False, url: UrlOption = DEFAULT_URL,
                  api_key: KeyOption = None) -> None:
    """Delete a model and its tasks."""
    with api(url, api_key) as fs:
        fs.models.delete(model_id)
    print_json({"id": model_id, "deleted": True}) if as_json else typer.echo(f"{model_id} deleted")


@models_cli.command("export")
def models_export(
    model_id: str,
    path: Annotated[Path, typer.Argument(dir_okay=False, help="where to write the .safetensors file")],
    as_json: JsonOption = False, url: UrlOption = DEFAULT_URL, api_key: KeyOption = None,
) -> None:
    """Download the meta-trained weights (safetensors; models.weights.read_weights rebuilds the network)."""
    with api(url, api_key) as fs:
        written = fs.models.export(model_id, path)
    size = written.stat().st_size
    if as_json:
        print_json({"id": model_id, "path": str(written), "bytes": size})
    else:
        typer.echo(f"{model_id} -> {written} ({size} bytes)")


# tasks and predictions ----------------------------------------------------------------------


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _npz_arrays(path: Path) -> dict[str, Any]:
    import numpy as np  # lazily: the CLI sets thread limits before numerical libraries load

    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def read_support(path: Path) -> tuple[list[Any], list[Any]]:
    """Inputs and labels from a folder of images per label (<label>/<image>) or an npz of x, y."""
    if path.is_dir():
        inputs: list[Any] = []
        labels: list[Any] = []
        for folder in sorted(p for p in path.iterdir() if p.is_dir()):
            for image in _images(folder):
                inputs.append(image)
                labels.append(folder.name)
        if not inputs:
            raise typer.BadParameter(f"{path} holds no <label>/<image>.png folders")
        return inputs, labels
    arrays = _npz_arrays(path)
    if "x" not in arrays or "y" not in arrays:
        raise typer.BadParameter(f"{path} must be a folder of images per label or an npz with arrays x and y")
    return arrays["x"].tolist(), arrays["y"].tolist()


def read_inputs(paths: list[Path]) -> tuple[list[str], list[Any]]:
    """Query inputs (and a name for each) from image files, folders of images, or npz files (array x)."""
    names: list[str] = []
    inputs: list[Any] = []
    for path in paths:
        if path.is_dir():
            found = _images(path)
            names += [str(p) for p in found]
            inputs += found
        elif path.suffix.lower() == ".npz":
            rows = _npz_arrays(path)["x"].tolist()
            names += [f"{path}[{i}]" for i in range(len(rows))]
            inputs += rows
        else:
            names.append(str(path))
            inputs.append(path)
    return names, inputs


def _task_row(t: Task) -> list[Any]:
    return [t.id, t.model_id, t.status, t.support_size, json.dumps(t.labels), t.created_at]


@tasks_cli.command("adapt")
def tasks_adapt(
    model_id: str,
    support: Annotated[Path, typer.Option(exists=True, help="a folder of images per label, or an npz of x and y")],
    inner_steps: Annotated[int | None, typer.Option(help="override the model's adaptation steps")] = None,
    wait: Annotated[bool, typer.Option(help="wait for the adapted task")] = True,
    as_json: JsonOption = False, url: UrlOption = DEFAULT_URL, api_key: KeyOption = None,
) -> None:
    """Adapt a model to a support set; prints the task's id and status."""
    inputs, labels = read_support(support)
    options = {"inner_steps": inner_steps} if inner_steps is not None else {}
    with api(url, api_key) as fs:
        task = fs.models.adapt(model_id, inputs, labels, wait=wait, **options)
    if as_json:
        print_json(task.raw)
    else:
        typer.echo(f"{task.id} {task.status} labels {json.dumps(task.labels)}")


@tasks_cli.command("list")
def tasks_list(model_id: str, limit: LimitOption = 20, as_json: JsonOption = False, url: UrlOption = DEFAULT_URL,
               api_key: KeyOption = None) -> None:
    """A model's tasks, newest first."""
    with api(url, api_key) as fs:
        tasks = listed(fs.models.tasks(model_id, limit=min(limit or 100, 100)), limit)
    if as_json:
        print_json([t.raw for t in tasks])
    else:
        print_table(["id", "model", "status", "support", "labels", "created"], [_task_row(t) for t in tasks])


@tasks_cli.command("get")
def tasks_get(task_id: str, as_json: JsonOption = False, url: UrlOption = DEFAULT_URL, api_key: KeyOption = None) -> None:
    """One task."""
    with api(url, api_key) as fs:
        print_object(fs.tasks.get(task_id).raw, as_json)


@tasks_cli.command("delete")
def tasks_delete(task_id: str, as_json: JsonOption = False, url: UrlOption = DEFAULT_URL, api_key: KeyOption = None) -> None:
    """Delete a task."""
    with api(url, api_key) as fs:
        fs.tasks.delete(task_id)
    print_json({"id": task_id, "deleted": True}) if as_json else typer.echo(f"{task_id} deleted")


def predict(
    task_id: str,
    inputs: Annotated[list[Path] | None, typer.Argument(exists=True, help="images, folders of images, or npz files")] = None,
    values: Annotated[str | None, typer.Option("--values", help="inputs as a JSON list instead of files")] = None,
    as_json: JsonOption = False, url: UrlOption = DEFAULT_URL, api_key: KeyOption = None,
) -> None:
    """Predictions of an adapted task, one line per input: its file name, the label (or value), its probability."""
    if values:
        batch = json.loads(values)
        names = [f"[{i}]" for i in range(len(batch))]
    else:
        names, batch = read_inputs(inputs or [])
    if not batch:
        raise typer.BadParameter("give input files or --values '[...]'")
    with api(url, api_key) as fs:
        result = fs.tasks.predict(task_id, batch)
    if as_json:
        print_json([{"input": name, "prediction": p.label, "probability": p.probability,
                     "probabilities": p.probabilities} for name, p in zip(names, result, strict=True)])
        return
    for name, p in zip(names, result, strict=True):
        shown = json.dumps(p.label) if not isinstance(p.label, str) else p.label
        typer.echo(f"{name}\t{shown}" + (f"\t{p.probability:.3f}" if p.probability is not None else ""))


# datasets -----------------------------------------------------------------------------------


def _dataset_row(d: Dataset) -> list[Any]:
    return [d.id, d.name, d.format, d.output, d.input_shape,
            short({k: v for k, v in d.summary.items() if k != "class_names"})]


@datasets_cli.command("upload")
def datasets_upload(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="an .npz, a .csv or a .zip of class folders")],
    name: str | None = None,
    invert: Annotated[bool | None, typer.Option(help="images: dark strokes on white become 1")] = None,
    image_size: Annotated[int | None, typer.Option(help="images: resized to this square size (default 28)")] = None,
    label_column: Annotated[str | None, typer.Option(help="tables: the column that holds the labels")] = None,
    channels: Annotated[int | None, typer.Option(help="images: 1 (greyscale) or 3 (colour)")] = None,
    field: Annotated[list[str] | None, typer.Option(help="any other form field, KEY=VALUE; repeatable")] = None,
    as_json: JsonOption = False, url: UrlOption = DEFAULT_URL, api_key: KeyOption = None,
) -> None:
    """Upload and validate a dataset; prints its id (it names the dataset in jobs)."""
    fields: dict[str, Any] = {"invert": invert, "image_size": image_size, "label_column": label_column,
                              "channels": channels, **_pairs(field or [], "--field")}
    with api(url, api_key) as fs:
        ds = fs.datasets.upload(path, name, **{k: v for k, v in fields.items() if v is not None})
    print_json(ds.raw) if as_json else typer.echo(f"{ds.id} {ds.name} {ds.format} {ds.input_shape}")


@datasets_cli.command("list")
def datasets_list(limit: LimitOption = 0, as_json: JsonOption = False, url: UrlOption = DEFAULT_URL,
                  api_key: KeyOption = None) -> None:
    """Uploaded datasets and the built-ins."""
    with api(url, api_key) as fs:
        datasets = listed(fs.datasets.list(limit=min(limit or 100, 100)), limit)
    if as_json:
        print_json([d.raw for d in datasets])
    else:
        print_table(["id", "name", "format", "output", "input shape", "summary"], [_dataset_row(d) for d in datasets])


@datasets_cli.command("get")
def datasets_get(dataset_id: str, as_json: JsonOption = False, url: UrlOption = DEFAULT_URL,
                 api_key: KeyOption = None) -> None:
    """One dataset."""
    with api(url, api_key) as fs:
        print_object(fs.datasets.get(dataset_id).raw, as_json)


@datasets_cli.command("delete")
def datasets_delete(dataset_id: str, as_json: JsonOption = False, url: UrlOption = DEFAULT_URL,
                    api_key: KeyOption = None) -> None:
    """Delete an uploaded dataset."""
    with api(url, api_key) as fs:
        fs.datasets.delete(dataset_id)
    print_json({"id": dataset_id, "deleted": True}) if as_json else typer.echo(f"{dataset_id} deleted")


# keys ---------------------------------------------------------------------------------------


@keys_cli.command("create")
def keys_create(
    tenant: Annotated[str | None, typer.Option(help="add a key to this tenant (tnt_local: the local user's objects)")] = None,
    name: Annotated[str, typer.Option(help="a new tenant's name")] = "default",
    if_none: Annotated[bool, typer.Option(
        "--if-none", help="only when no live key exists; else say so, create nothing and exit 0 "
                          "(a bootstrap that may run at every start, as compose's init service does)",
    )] = False,
    as_json: JsonOption = False,
) -> None:
    """A new API key (for a new tenant unless --tenant), written to the database of DATABASE_URL, else the
    SQLite file in FEWSHOT_DATA_DIR (default ./.fewshot); the key alone is the last line printed."""
    import os

    from sqlalchemy.engine import make_url

    from service.auth import create_key, keys_exist
    from store import cache_events
    from store.db import init_db, session_scope
    from store.settings import Settings

    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = make_url(settings.sqlalchemy_url).render_as_string(hide_password=True)
    init_db(settings.sqlalchemy_url)
    try:
        with session_scope(settings.sqlalchemy_url) as session:
            new = None if if_none and keys_exist(session) else create_key(session, tenant, name)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if new is None:
        if as_json:
            print_json({"tenant_id": None, "key_id": None, "key": None, "database": database})
        else:
            typer.echo(f"a live API key exists in the database {database}: none created (--if-none)")
        return
    cache_events.publish(settings.redis_url, "keys")  # API processes that cached "no keys" ask again
    if as_json:
        print_json({"tenant_id": new.tenant_id, "key_id": new.key_id, "key": new.key, "database": database})
        return
    if not os.environ.get("DATABASE_URL") and not os.environ.get("FEWSHOT_DATA_DIR"):
        typer.echo(f"FEWSHOT_DATA_DIR is not set: the key goes to {settings.data_dir.resolve()}", err=True)
    typer.echo(f"wrote to the database {database}")
    typer.echo(f"tenant {new.tenant_id}, key {new.key_id}; the key is shown once, keep it secret:")
    typer.echo(new.key)


@keys_cli.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="the key's id (key_...), as `keys create` printed it")],
                as_json: JsonOption = False) -> None:
    """Revoke an API key: every API process refuses it at once (REDIS_URL set), within
    FEWSHOT_HOT_CACHE_TTL_SECONDS otherwise."""
    from service.auth import revoke_key
    from store import cache_events
    from store.db import init_db, session_scope
    from store.settings import Settings

    settings = Settings()
    init_db(settings.sqlalchemy_url)
    with session_scope(settings.sqlalchemy_url) as session:
        revoked = revoke_key(session, key_id)
    if not revoked:
        raise typer.BadParameter(f"no live key {key_id!r}")
    cache_events.publish(settings.redis_url, "keys")
    if as_json:
        print_json({"key_id": key_id, "revoked": True})
    else:
        typer.echo(f"key {key_id} revoked")


def register(cli: typer.Typer) -> None:
    cli.add_typer(jobs_cli, name="jobs")
    cli.add_typer(models_cli, name="models")
    cli.add_typer(tasks_cli, name="tasks")
    cli.add_typer(datasets_cli, name="datasets")
    cli.add_typer(keys_cli, name="keys")
    cli.command("predict")(predict)
