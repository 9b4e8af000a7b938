"""Every benchmark in benchmarks/ runs in its smoke mode (seconds, tiny sizes): CI checks that the
scripts work, never their timings. Results go to a temporary folder, not benchmarks/results/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if "--smoke" in p.read_text())


def test_every_benchmark_has_a_smoke_mode() -> None:
    assert len(SCRIPTS) >= 8, SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_smoke(script: str, tmp_path: Path) -> None:
    env = {**os.environ, "FEWSHOT_BENCH_RESULTS": str(tmp_path), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--smoke"], cwd=BENCHMARKS.parent, env=env,
        capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, f"{script} --smoke failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    written = list(tmp_path.glob("*.md"))
    assert written, f"{script} --smoke wrote no results file to {tmp_path}"
    assert all("python " in f.read_text() for f in written), "a results file must carry the command that made it"
