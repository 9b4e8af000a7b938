"""`fewshot jobs|models|tasks|datasets|keys ...` and `fewshot predict`: the API from a terminal.

They talk HTTP to FEWSHOT_URL (default http://127.0.0.1:8000) with FEWSHOT_API_KEY, except
`keys create`, which writes to the database of FEWSHOT_DATA_DIR / DATABASE_URL directly.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.api_client import DEFAULT_URL, ApiCallError, ApiClient

UrlOption = Annotated[str, typer.Option("--url", envvar="FEWSHOT_URL", help="the API's base URL")]
KeyOption = Annotated[str | None, typer.Option("--api-key", envvar="FEWSHOT_API_KEY", help="API key", show_default=False)]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

jobs_cli = typer.Typer(help="meta-training jobs", no_args_is_help=True)
models_cli = typer.Typer(help="meta-trained models", no_args_is_help=True)
tasks_cli = typer.Typer(help="tasks adapted to a support set", no_args_is_help=True)
datasets_cli = typer.Typer(help="datasets: built-in and uploaded", no_args_is_help=True)
keys_cli = typer.Typer(help="API keys (written to the database directly)", no_args_is_help=True)

console = Console()


def _client(url: str, api_key: str | None) -> ApiClient:
    return ApiClient(url, api_key)


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except ApiCallError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2))


def _table(columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(*columns)
    for row in rows:
        table.add_row(*[("" if v is None else str(v)) for v in row])
    console.print(table)


# jobs ---------------------------------------------------------------------------------------


@jobs_cli.command("create")
def jobs_create(
    algorithm: Annotated[str, typer.Option(help="maml, ...")],
    dataset: Annotated[str, typer.Option(help="a built-in name or an uploaded ds_ id")],
    config: Annotated[str, typer.Option(help="config as a JSON object")] = "{}",
    watch: Annotated[bool, typer.Option(help="follow the job until it ends")] = False,
    idempotency_key: Annotated[str | None, typer.Option(help="retry-safe submission")] = None,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
) -> None:
    """Submit a meta-training job; prints it as JSON."""
    try:
        cfg = json.loads(config)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--config is not JSON: {exc}") from None
    client = _client(url, api_key)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    job = _call(client.post, "/v1/jobs", json={"algorithm": algorithm, "dataset": dataset, "config": cfg}, headers=headers)
    _print_json(job)
    if watch:
        _watch(client, job["id"])


@jobs_cli.command("list")
def jobs_list(
    status: Annotated[str | None, typer.Option(help="queued, running, succeeded, failed, cancelled")] = None,
    limit: int = 20,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
) -> None:
    """Jobs, newest first."""
    params: dict[str, Any] = {"limit": limit, **({"status": status} if status else {})}
    page = _call(_client(url, api_key).get, "/v1/jobs", params=params)
    _table(["id", "algorithm", "dataset", "status", "step", "model"],
           [[j["id"], j["algorithm"], j["dataset"], j["status"],
             f"{j['progress']['step']}/{j['progress']['total_steps']}", j["model_id"]] for j in page["data"]])


@jobs_cli.command("get")
def jobs_get(job_id: str, url: UrlOption = DEFAULT_URL, api_key: KeyOption = None) -> None:
    """One job as JSON."""
    _print_json(_call(_client(url, api_key).get, f"/v1/jobs/{job_id}"))


@jobs_cli.command("cancel")
def jobs_cancel(job_id: str, url: UrlOption = DEFAULT_URL, api_key: KeyOption = None) -> None:
    """Stop a queued or running job."""
    _print_json(_call(_client(url, api_key).post, f"/v1/jobs/{job_id}/cancel"))


@jobs_cli.command("watch")
def jobs_watch(job_id: str, url: UrlOption = DEFAULT_URL, api_key: KeyOption = None) -> None:
    """A live progress bar with the latest metrics, until the job ends; exits 1 unless it succeeded."""
    _watch(_client(url, api_key), job_id)


def _watch(client: ApiClient, job_id: str) -> None:
    job = _call(client.get, f"/v1/jobs/{job_id}")
    status = job["status"]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[metrics]}"))
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task(f"{job_id} {status}", total=job["progress"]["total_steps"] or None,
                                completed=job["progress"]["step"], metrics="")
        _call(_follow, client, job_id, progress, bar)
    job = _call(client.get, f"/v1/jobs/{job_id}")
    line = f"{job_id} {job['status']}"
    if job["model_id"]:
        line += f": model {job['model_id']}"
    if job["error"]:
        line += f": {job['error']}"
    typer.echo(line)
    if job["status"] != "succeeded":
        raise typer.Exit(1)


def _follow(client: ApiClient, job_id: str, progress: Progress, bar: Any) -> None:
    """Moves the bar with the job's event stream until the job ends."""
    for kind, event in client.events(job_id):
        data = event.get("data", {})
        if kind == "progress":
            metrics = "  ".join(f"{k}={v:.4g}" for k, v in data.get("metrics", {}).items() if isinstance(v, (int, float)))
            progress.update(bar, completed=data["step"], total=data["total_steps"], metrics=metrics)
        elif kind == "status":
            progress.update(bar, description=f"{job_id} {data['status']}")


# models -------------------------------------------------------------------------------------


@models_cli.command("list")
def models_list(limit: int = 20, url: UrlOption = DEFAULT_URL, api_key: KeyOption = None) -> None:
    """Meta-trained models, newest first."""
    page = _call(_client(url, api_key).get, "/v1/models", params={"limit": limit})
    _table(["id", "algorithm", "dataset", "output", "input shape", "metrics"],
           [[m["id"], m["algorithm"], m["dataset"], m["output"], m["input_shape"],
             json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in m["metrics"].items()})]
            for m in page["data"]])


@models_cli.command("get")
def models_get(model_id: str, url: UrlOption = DEFAULT_URL, api_key: KeyOption = None) -> None:
    """One model as JSON."""
    _print_json(_call(_client(url, api_key).get, f"/v1/models/{model_id}"))


# tasks and predictions ----------------------------------------------------------------------


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _npz_arrays(path: Path) -> dict[str, Any]:
    import numpy as np  # lazily: the CLI sets thread limits before numerical libraries load

    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def read_support(path: Path) -> tuple[list[Any], list[Any]]:
    """Inputs and labels from a folder of images per label (<label>/<image>) or an npz of x, y."""
    if path.is_dir():
        inputs, labels = [], []
        for folder in sorted(p for p in path.iterdir() if p.is_dir()):
            for image in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
                inputs.append(_b64(image))
                labels.append(folder.name)
        if not inputs:
            raise typer.BadParameter(f"{path} holds no <label>/<image>.png folders")
        return inputs, labels
    arrays = _npz_arrays(path)
    if "x" not in arrays or "y" not in arrays:
        raise typer.BadParameter(f"{path} must be a folder of images per label or an npz with arrays x and y")
    return arrays["x"].tolist(), arrays["y"].tolist()


def read_inputs(paths: list[Path]) -> list[Any]:
    """Query inputs from image files, folders of images, or npz files (array x)."""
    inputs: list[Any] = []
    for path in paths:
        if path.is_dir():
            inputs += [_b64(p) for p in sorted(path.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
        elif path.suffix.lower() == ".npz":
            inputs += _npz_arrays(path)["x"].tolist()
        else:
            inputs.append(_b64(path))
    return inputs


@tasks_cli.command("adapt")
def tasks_adapt(
    model_id: str,
    support: Annotated[Path, typer.Option(exists=True, help="a folder of images per label, or an npz of x and y")],
    inner_steps: Annotated[int | None, typer.Option(help="override the model's adaptation steps")] = None,
    wait: Annotated[bool, typer.Option(help="wait for the adapted task")] = True,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
) -> None:
    """Adapt a model to a support set; prints the task as JSON."""
    inputs, labels = read_support(support)
    options = {"inner_steps": inner_steps} if inner_steps is not None else {}
    body = {"support": {"inputs": inputs, "labels": labels}, "options": options, "wait": wait}
    _print_json(_call(_client(url, api_key).post, f"/v1/models/{model_id}/tasks", json=body))


@tasks_cli.command("get")
def tasks_get(task_id: str, url: UrlOption = DEFAULT_URL, api_key: KeyOption = None) -> None:
    """One task as JSON."""
    _print_json(_call(_client(url, api_key).get, f"/v1/tasks/{task_id}"))


def predict(
    task_id: str,
    inputs: Annotated[list[Path] | None, typer.Argument(exists=True, help="images, folders of images, or npz files")] = None,
    json_inputs: Annotated[str | None, typer.Option("--json", help="inputs as a JSON list instead of files")] = None,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
) -> None:
    """Predictions of an adapted task, one line per input: the label (or value) and its probability."""
    values = json.loads(json_inputs) if json_inputs else read_inputs(inputs or [])
    if not values:
        raise typer.BadParameter("give input files or --json '[...]'")
    result = _call(_client(url, api_key).post, f"/v1/tasks/{task_id}/predictions", json={"inputs": values})
    probs = result.get("probabilities")
    for i, prediction in enumerate(result["predictions"]):
        typer.echo(f"{prediction}\t{max(probs[i]):.3f}" if probs else json.dumps(prediction))


# datasets -----------------------------------------------------------------------------------


@datasets_cli.command("upload")
def datasets_upload(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="an .npz, a .csv or a .zip of class folders")],
    name: str | None = None,
    invert: Annotated[bool, typer.Option(help="images: dark strokes on white become 1")] = False,
    image_size: int = 28,
    channels: Annotated[int | None, typer.Option(help="images: 1 (greyscale) or 3 (colour); default: detected")] = None,
    label_column: Annotated[str, typer.Option(help="csv: the column of labels")] = "label",
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
) -> None:
    """Upload and validate a dataset; prints it as JSON (its id names it in jobs)."""
    data = {"image_size": str(image_size), "invert": str(invert).lower(), "label_column": label_column,
            **({"name": name} if name else {}), **({"channels": str(channels)} if channels else {})}
    with path.open("rb") as f:
        ds = _call(_client(url, api_key).post, "/v1/datasets", files={"file": (path.name, f)}, data=data)
    _print_json(ds)


@datasets_cli.command("list")
def datasets_list(limit: int = 50, url: UrlOption = DEFAULT_URL, api_key: KeyOption = None) -> None:
    """Uploaded datasets and the built-ins."""
    page = _call(_client(url, api_key).get, "/v1/datasets", params={"limit": limit})
    _table(["id", "name", "format", "output", "input shape", "summary"],
           [[d["id"], d["name"], d["format"], d["output"], d["input_shape"],
             json.dumps({k: v for k, v in d["summary"].items() if k != "class_names"})] for d in page["data"]])


# keys ---------------------------------------------------------------------------------------


@keys_cli.command("create")
def keys_create(
    tenant: Annotated[str | None, typer.Option(help="add a key to this tenant (tnt_local: the local user's objects)")] = None,
    name: Annotated[str, typer.Option(help="a new tenant's name")] = "default",
) -> None:
    """A new API key (for a new tenant unless --tenant); the key alone is the last line printed."""
    from service.auth import create_key
    from store import cache_events
    from store.db import init_db, session_scope
    from store.settings import Settings

    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    init_db(settings.sqlalchemy_url)
    try:
        with session_scope(settings.sqlalchemy_url) as session:
            new = create_key(session, tenant, name)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    cache_events.publish(settings.redis_url, "keys")  # API processes that cached "no keys" ask again
    typer.echo(f"tenant {new.tenant_id}, key {new.key_id}; the key is shown once, keep it secret:")
    typer.echo(new.key)


@keys_cli.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="the key's id (key_...), as `keys create` printed it")]) -> None:
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
    typer.echo(f"key {key_id} revoked")


def register(cli: typer.Typer) -> None:
    cli.add_typer(jobs_cli, name="jobs")
    cli.add_typer(models_cli, name="models")
    cli.add_typer(tasks_cli, name="tasks")
    cli.add_typer(datasets_cli, name="datasets")
    cli.add_typer(keys_cli, name="keys")
    cli.command("predict")(predict)
