"""`fewshot jobs watch`: a job's progress with an ETA, then the model's final metrics."""

from __future__ import annotations

import typer
from fewshot_client import Fewshot, JobEvent
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cli.output import console, print_json, short


def watch_job(fs: Fewshot, job_id: str, as_json: bool) -> None:
    """Follows the job's event stream to its end; exits 1 unless it succeeded."""
    job = fs.jobs.get(job_id)
    if as_json:
        job = job.wait(on_event=lambda event: typer.echo(json_line(event)))
        model = fs.models.get(job.model_id).raw if job.model_id else None
        print_json({"job": job.raw, "model": model})
    else:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[metrics]}"))
        with Progress(*columns, console=console, transient=False) as progress:
            bar = progress.add_task(f"{job_id} {job.status}", total=job.progress.total_steps or None,
                                    completed=job.progress.step, metrics="")

            def show(event: JobEvent) -> None:
                if event.type == "progress":
                    metrics = {k: v for k, v in event.data.get("metrics", {}).items() if isinstance(v, (int, float))}
                    progress.update(bar, completed=event.data["step"], total=event.data["total_steps"],
                                    metrics=short(metrics))
                elif event.type == "status":
                    progress.update(bar, description=f"{job_id} {event.data['status']}")

            job = job.wait(on_event=show)
        line = f"{job_id} {job.status}"
        if job.model_id:
            line += f": model {job.model_id}"
        if job.error:
            line += f": {job.error}"
        typer.echo(line)
        if job.model_id:
            typer.echo(f"final metrics: {short(fs.models.get(job.model_id).metrics)}")
    if job.status != "succeeded":
        raise typer.Exit(1)


def json_line(event: JobEvent) -> str:
    import json

    return json.dumps(event.raw)
