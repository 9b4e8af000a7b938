"""`fewshot eval ...`: measure a stored model on benchmark formats, in this process.

The model is loaded through the state layer and adapted and queried through the learner's own
adapt/predict, the path the adapt worker and the API take.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.output import JsonOption, print_json
from cli.process_setup import DataDirOption, setup_process

eval_app = typer.Typer(help="Evaluate a stored model on benchmark data.", no_args_is_help=True)


@eval_app.command("one-shot-runs")
def one_shot_runs(
    runs_dir: Annotated[Path, typer.Argument(help="folder of runNN/ folders (Lake et al.'s one-shot format)")],
    model_id: Annotated[str, typer.Argument(help="a model id (mdl_...) of this data directory")],
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Adapt the model to each run's 20 training images, classify its 20 test images, print each
    run's error and the mean error (with --json: errors as fractions, once every run is done)."""
    setup_process(data_dir)  # data dir and one torch thread, before torch is imported
    from models.one_shot_runs import read_runs, run_error
    from store.db import Model, init_db, session_scope
    from store.settings import Settings
    from workers.pipelines import model_learner

    settings = Settings()
    try:
        runs = read_runs(runs_dir)
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    init_db(settings.sqlalchemy_url)
    with session_scope(settings.sqlalchemy_url) as session:
        model = session.get(Model, model_id)
        if model is None:
            typer.echo(f"error: no model {model_id} in {settings.data_dir}; list them with GET /v1/models", err=True)
            raise typer.Exit(2)
        learner = model_learner(model, settings)
    errors = []
    for run in runs:
        try:
            error = run_error(learner, run)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        errors.append(error)
        if not as_json:
            typer.echo(f"{run.name}: error {100 * error:.1f}%")
    mean = sum(errors) / len(errors)
    if as_json:
        per_run = [{"run": run.name, "error": error} for run, error in zip(runs, errors, strict=True)]
        print_json({"model_id": model_id, "runs": per_run, "mean_error": mean})
    else:
        typer.echo(f"mean error {100 * mean:.2f}% over {len(errors)} runs")
