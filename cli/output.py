"""How the API commands print: JSON for scripts (--json), tables whose ids are never cut, errors on stderr."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer
from fewshot_client import Fewshot, FewshotError
from rich.console import Console
from rich.table import Table

T = TypeVar("T")

UrlOption = Annotated[str, typer.Option("--url", envvar="FEWSHOT_URL", help="the API's base URL")]
KeyOption = Annotated[str | None, typer.Option("--api-key", envvar="FEWSHOT_API_KEY", help="API key", show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON (the API's objects, full ids) for scripts")]

console = Console()


@contextmanager
def api(url: str, api_key: str | None) -> Iterator[Fewshot]:
    """The SDK client; an API error ends the command with its message on stderr and exit code 1."""
    try:
        with Fewshot(url, api_key) as fs:
            yield fs
    except FewshotError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


def print_table(columns: list[str], rows: list[list[Any]], ids: tuple[int, ...] = (0,)) -> None:
    """A table as wide as it needs to be (wider than the terminal if need be): no cell is cut or wrapped."""
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    table = Table(*columns)
    for column in table.columns:
        column.no_wrap = True
        column.overflow = "ignore"
    for row in cells:
        table.add_row(*row)
    needed = 1 + sum(max([len(c), *(len(row[i]) for row in cells)]) + 3 for i, c in enumerate(columns))
    Console(width=max(console.width, needed), soft_wrap=True).print(table)


def print_object(raw: dict[str, Any], as_json: bool) -> None:
    """One API object: JSON, or one line per field."""
    if as_json:
        print_json(raw)
        return
    for key, value in raw.items():
        shown = json.dumps(value, default=str) if isinstance(value, (dict, list)) else value
        typer.echo(f"{key}: {'' if shown is None else shown}")


def short(values: dict[str, Any]) -> str:
    """Metrics and summaries in a table cell: numbers rounded, long lists left out."""
    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in values.items() if not isinstance(v, (list, dict))}
    return " ".join(f"{k}={v}" for k, v in shown.items())


def listed(items: Iterable[T], limit: int) -> list[T]:
    """The first `limit` items of an auto-paging list (all of them with 0)."""
    out: list[T] = []
    for item in items:
        if limit and len(out) >= limit:
            break
        out.append(item)
    return out

