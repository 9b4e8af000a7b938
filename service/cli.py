"""The `fewshot` command line."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Annotated

import typer

cli = typer.Typer(help="fewshot: few-shot adaptation as a service.", no_args_is_help=True)

DataDirOption = Annotated[Path | None, typer.Option(help="state folder (FEWSHOT_DATA_DIR, default ./.fewshot)")]


def _setup(data_dir: Path | None) -> None:
    from service.launcher import THREAD_ENV

    if data_dir is not None:
        os.environ["FEWSHOT_DATA_DIR"] = str(data_dir)
    for key, value in THREAD_ENV.items():  # before torch is imported in this process
        os.environ.setdefault(key, value)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    data_dir: DataDirOption = None,
) -> None:
    """The API, a train worker and an adapt worker, and an embedded Redis unless REDIS_URL is set."""
    _setup(data_dir)
    import uvicorn

    from service.launcher import Supervisor
    from store.settings import Settings

    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor(settings.data_dir)
    try:
        if not settings.redis_url:
            os.environ["REDIS_URL"] = supervisor.start_redis()
            typer.echo(f"embedded Redis at {os.environ['REDIS_URL']} (files in {settings.data_dir / 'redis'})")
        from service.main import create_app
        from store.recovery import requeue_unfinished

        app = create_app()
        requeue_unfinished(app.state.settings.sqlalchemy_url, app.state.celery)
        supervisor.start_worker("train")
        supervisor.start_worker("adapt")
        supervisor.watch()
        typer.echo(f"fewshot API on http://{host}:{port} (data in {settings.data_dir.resolve()})")
        # uvicorn re-raises the signal that stopped it once it has shut down; SIGTERM's default
        # action would then kill this process before the workers and Redis are stopped.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        uvicorn.run(app, host=host, port=port, log_level="info")
    finally:
        supervisor.stop()


@cli.command()
def api(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    data_dir: DataDirOption = None,
) -> None:
    """The API alone (production: workers and Redis run elsewhere; REDIS_URL required)."""
    _setup(data_dir)
    import uvicorn

    from service.main import create_app

    uvicorn.run(create_app(), host=host, port=port, log_level="info")


@cli.command()
def worker(
    queues: Annotated[str, typer.Option(help="comma-separated queues: train, adapt")] = "train,adapt",
    concurrency: Annotated[int, typer.Option(help="pool processes")] = 1,
    data_dir: DataDirOption = None,
) -> None:
    """A Celery worker alone (REDIS_URL required)."""
    _setup(data_dir)
    from workers.app import app

    app.worker_main(["worker", "-Q", queues, "-c", str(concurrency), "--pool", "prefork", "--loglevel", "INFO"])


def main() -> None:
    cli()
