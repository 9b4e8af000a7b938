"""The `fewshot` command line."""

from __future__ import annotations

import os
import signal
from typing import Annotated

import typer

from cli.api_commands import register as register_api_commands
from cli.eval_commands import eval_app
from cli.output import JsonOption, print_json
from cli.process_setup import DataDirOption, setup_process
from store.settings import Settings

cli = typer.Typer(help="fewshot: few-shot adaptation as a service.", no_args_is_help=True)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


ApiWorkersOption = Annotated[int | None, typer.Option(
    min=1, envvar="FEWSHOT_API_WORKERS", help="API processes on the one port (default: one per core); each holds its own caches and runs torch "
                "on FEWSHOT_TORCH_THREADS threads",
)]
AccessLogOption = Annotated[bool, typer.Option(help="log a line per request (the metrics at /metrics count them either way)")]


def _run_api(app: object, host: str, port: int, workers: int | None, access_log: bool) -> None:
    """uvicorn with `app`, or `workers` processes each building its own app (cli/api_processes.py).
    Default: one process per core (the API is CPU-bound: 1,000 predictions/s on 2 cores take both)."""
    workers = workers or os.cpu_count() or 1

    if workers == 1:
        import uvicorn

        from service.main import settle_heap

        settle_heap()
        uvicorn.run(app, host=host, port=port, log_level="info", access_log=access_log)  # type: ignore[arg-type]
    else:  # a listening socket per process, so that connections spread over them (cli/api_processes.py)
        from cli.api_processes import run_api_processes

        run_api_processes(host, port, workers, log_level="info", access_log=access_log)


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    data_dir: DataDirOption = None,
    api_workers: ApiWorkersOption = None,
    access_log: AccessLogOption = True,
) -> None:
    """The API, a train worker and an adapt worker, and an embedded Redis unless REDIS_URL is set."""
    setup_process(data_dir)

    from cli.launcher import Supervisor
    from store.settings import Settings

    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    check_auth_setup(settings, host)
    supervisor = Supervisor(settings.data_dir)
    try:
        if not settings.redis_url:
            os.environ["REDIS_URL"] = supervisor.start_redis()
            where = os.environ["REDIS_URL"].rpartition("@")[2]  # never the password, which stays in its file
            typer.echo(f"embedded Redis at redis://{where} (password and files in {settings.data_dir / 'redis'})")
        from service.main import create_app

        app = create_app()  # the workers' reconciler re-sends what a previous run left unfinished
        supervisor.start_worker("train")
        supervisor.start_worker("adapt", settings.adapt_processes)
        supervisor.watch()
        typer.echo(f"fewshot API on http://{host}:{port} (data in {settings.data_dir.resolve()})")
        # uvicorn re-raises the signal that stopped it once it has shut down; SIGTERM's default
        # action would then kill this process before the workers and Redis are stopped.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        _run_api(app, host, port, api_workers, access_log)
    finally:
        supervisor.stop()


@cli.command()
def api(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    data_dir: DataDirOption = None,
    api_workers: ApiWorkersOption = None,
    access_log: AccessLogOption = True,
) -> None:
    """The API alone (production: workers and Redis run elsewhere; REDIS_URL required)."""
    setup_process(data_dir)

    from service.main import create_app
    from store.settings import get_settings

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # its database (SQLite) lives there
    check_auth_setup(settings, host)
    _run_api(create_app(), host, port, api_workers, access_log)


@cli.command()
def worker(
    queues: Annotated[str, typer.Option(help="comma-separated queues: train, adapt")] = "train,adapt",
    concurrency: Annotated[int, typer.Option(help="pool processes")] = 1,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:N (binds the worker to GPU N) or auto; default FEWSHOT_DEVICE")
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """A Celery worker alone (REDIS_URL required). Give GPU workers `--queues train --device cuda:N`."""
    setup_process(data_dir)
    if device is not None:
        if device.startswith("cuda:"):
            # Bind before any CUDA use: the pool process sees one GPU, as cuda:0.
            os.environ["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
            device = "cuda"
        os.environ["FEWSHOT_DEVICE"] = device
    from workers.app import app

    app.worker_main(["worker", "-Q", queues, "-c", str(concurrency), "--pool", "prefork", "--loglevel", "INFO"])


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_auth_setup(settings: Settings, host: str) -> None:
    """Without API keys only a loopback address serves (one local user); said loudly."""
    from service.auth import keys_exist
    from store.db import init_db, session_scope

    init_db(settings.sqlalchemy_url)
    with session_scope(settings.sqlalchemy_url) as session:
        has_keys = keys_exist(session)
    if has_keys:
        typer.echo("API keys exist: every /v1 request needs `Authorization: Bearer <key>`")
        return
    if host not in LOOPBACK:
        typer.echo(
            f"refusing to serve on {host} without API keys: anyone who can reach it could use it. "
            "Create one with `fewshot keys create`, or serve on 127.0.0.1.", err=True,
        )
        raise typer.Exit(2)
    if settings.require_auth:
        typer.echo("FEWSHOT_REQUIRE_AUTH=1 and no API key exists yet: create one with `fewshot keys create`", err=True)
        return
    typer.echo(
        "WARNING: no API keys exist, so the API runs WITHOUT AUTHENTICATION for a single local user on "
        f"{host}. `fewshot keys create` turns authentication on.", err=True,
    )


register_api_commands(cli)
cli.add_typer(eval_app, name="eval")

db_app = typer.Typer(help="The database schema (Alembic migrations in store/migrations/).", no_args_is_help=True)
cli.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """Bring the database (DATABASE_URL, or the SQLite file) to the latest schema; prints the database
    (password hidden) and the revision it is at."""
    setup_process(data_dir)
    from sqlalchemy.engine import make_url

    from store.db import init_db
    from store.schema import current_revision
    from store.settings import Settings

    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    revision = current_revision(init_db(settings.sqlalchemy_url))
    database = make_url(settings.sqlalchemy_url).render_as_string(hide_password=True)
    if as_json:
        print_json({"database": database, "revision": revision})
    else:
        typer.echo(f"database schema is current: {database} at revision {revision}")


@db_app.command("revision")
def db_revision(message: Annotated[str, typer.Option("-m", "--message", help="what the migration changes")]) -> None:
    """Write a new migration from the difference between store/db.py and an up-to-date database."""
    setup_process(None)
    import tempfile

    from sqlalchemy import create_engine

    from store.schema import revision, upgrade

    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{tmp}/schema.db")
        upgrade(engine)
        revision(engine, message)


def main() -> None:
    cli()
