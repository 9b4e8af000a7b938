"""Shared by the benchmark scripts: one thread, results files with the command that made them."""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

for _key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_key, "1")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# FEWSHOT_BENCH_RESULTS redirects the files (the CI smoke runs write to a temporary folder).
RESULTS = Path(os.environ.get("FEWSHOT_BENCH_RESULTS") or ROOT / "benchmarks" / "results")
DATASETS = ROOT.parent / "shared" / "datasets"


def setup(threads: int) -> None:
    torch.set_num_threads(threads)


def command() -> str:
    return "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} thread(s)"


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median milliseconds of `repeats` calls of fn, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def alternating_medians(call: Callable[[], object], use: Callable[[bool], None], repeats: int) -> tuple[float, float]:
    """Median milliseconds of `call` under use(False) and under use(True), the two alternating call by call
    in one process after two warm-up calls of each (so both see the same machine); leaves use(True) set."""
    for i in range(4):
        use(bool(i % 2))
        call()
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeats):
        for setting in (False, True):
            use(setting)
            t0 = time.perf_counter()
            call()
            times[setting].append((time.perf_counter() - t0) * 1000)
    use(True)
    return statistics.median(times[False]), statistics.median(times[True])


def write_results(name: str, payload: dict[str, Any], markdown: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"command": command(), "machine": machine(), "written_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **payload}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    header = f"Command: `{payload['command']}`\n\nMachine: {payload['machine']}; written {payload['written_at']}.\n\n"
    (RESULTS / f"{name}.md").write_text(header + markdown)


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work, so that a timer read after it measures the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_device_mb(device: torch.device) -> int | None:
    """Peak CUDA memory allocated by torch in this process (None on the CPU: see peak RSS)."""
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20)


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values, by rank (no interpolation)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU seconds of these processes so far (from /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")
