"""What every `fewshot` command does first, before torch is imported in this process."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from cli.launcher import THREAD_ENV

DataDirOption = Annotated[Path | None, typer.Option(help="state folder (FEWSHOT_DATA_DIR, default ./.fewshot)")]


def setup_process(data_dir: Path | None) -> None:
    """The data directory, one torch thread, and log lines with their time and logger."""
    if data_dir is not None:
        os.environ["FEWSHOT_DATA_DIR"] = str(data_dir)
    for key, value in THREAD_ENV.items():  # before torch is imported in this process
        os.environ.setdefault(key, value)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
