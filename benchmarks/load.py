"""Mixed load against a real `fewshot serve`: hot predictions, bursts of adaptations, a training job.

Starts `fewshot serve` on a temp data folder (embedded Redis unless --redis-url, SQLite unless
--database-url), meta-trains a small MAML sinusoid model (seconds) and adapts a few tasks of
it, then for --minutes runs, all at once, from one asyncio loop (httpx.AsyncClient, keep-alive):

- hot predictions: --clients clients, each on its own connection, sending its next
  POST /v1/tasks/{id}/predictions (one input) as soon as the answer arrives;
- bursts: --burst adaptations at once (POST /v1/models/{id}/tasks, wait true, each its own
  support set), the first after --quiet-start seconds, then one 30-60 s after the previous
  burst's last answer, none in the last fifth of the run (predictions overlap every burst);
- training: one MAML sinusoid job at a time (POST /v1/jobs, then GET /v1/jobs/{id} every
  second; a new job when it ends).

Per request kind: requests a second, p50/p95/p99/max latency (answered requests, any status),
status counts; 5xx counted apart, and 429/503 with Retry-After counted as shed load (a
documented answer, not an error); a request with no answer (client timeout, reset) counted as
such. Predictions are split into those that overlapped a burst and those that did not. The
API's RSS (VmRSS of `fewshot serve`, which runs the API, plus any uvicorn worker processes;
the workers and Redis excluded) before and after the load. After the load, the tasks stored
for the model are counted in the database and compared with the ids the clients were given.

Goals, printed as PASS/FAIL: no 5xx, every request answered, every stored task answered, API
RSS growth under 10%, prediction p99 under 10x prediction p50 while bursts run (both over
the predictions that overlapped a burst). The exit status is 0 whatever the goals say, unless
--check.

    .venv/bin/python benchmarks/load.py --smoke      # 10 s, 4 clients, a burst of 10: checks the script runs
    .venv/bin/python benchmarks/load.py              # 5 minutes, 16 clients, bursts of 100
    .venv/bin/python benchmarks/load.py --database-url postgresql://postgres@127.0.0.1:5432/test --name load-postgresql
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from reporting import cpu_seconds, percentile, write_results

BIN = Path(sys.executable).parent
SERVED_MODEL = {"steps": 50, "meta_batch_size": 4, "eval_episodes": 5, "checkpoint_every": 0, "seed": 0}
TRAINING_JOB = {"steps": 3000, "meta_batch_size": 10, "eval_episodes": 20, "checkpoint_every": 500, "seed": 1}
SMOKE_TRAINING_JOB = {**TRAINING_JOB, "steps": 200, "checkpoint_every": 100}
FINISHED = ("succeeded", "failed", "cancelled")
NO_ANSWER = 0  # the status recorded for a request that got no HTTP answer
TIMEOUTS = {"prediction": 30.0, "adaptation": 120.0, "job": 30.0}  # client-side, seconds


# --- the served instance -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`fewshot serve` on a free loopback port with its own data folder, stopped with Ctrl-C."""

    def __init__(self, data_dir: Path, database_url: str | None, redis_url: str | None, serve_args: list[str]) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
        env["FEWSHOT_DATA_DIR"] = str(data_dir)
        env.update({"DATABASE_URL": database_url} if database_url else {})
        env.update({"REDIS_URL": redis_url} if redis_url else {})
        with (data_dir / "serve.log").open("ab") as out:
            self.process = subprocess.Popen([str(BIN / "fewshot"), "serve", "--port", str(self.port), *serve_args],
                                            env=env, stdout=out, stderr=subprocess.STDOUT)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=120)
        self._wait_ready(120)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"fewshot serve exited with {self.process.returncode}:\n{self.logs()}")
            try:
                if self.client.get("/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"fewshot serve not ready in {timeout:.0f} s:\n{self.logs()}")

    def logs(self) -> str:
        files = [self.data_dir / "serve.log", *sorted((self.data_dir / "logs").glob("*.log"))]
        return "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}" for f in files if f.exists())

    def tracebacks(self) -> dict[str, int]:
        """Tracebacks logged by the API (serve.log) and by each worker: errors the answers may not show."""
        files = [self.data_dir / "serve.log", *sorted((self.data_dir / "logs").glob("*.log"))]
        return {f.name: f.read_text(errors="replace").count("Traceback (most recent call last)") for f in files if f.exists()}

    def api_pids(self) -> list[int]:
        """`fewshot serve` (it runs the API) and its children that are not the launcher's
        (Redis and the workers, named in <data_dir>/run/*.pid): uvicorn's worker processes
        under --api-workers N."""
        launched = {int(p.read_text()) for p in (self.data_dir / "run").glob("*.pid")}
        pids = [self.process.pid]
        for children in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            for pid in map(int, children.read_text().split()):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except FileNotFoundError:
                    continue
                if pid not in launched and b"resource_tracker" not in cmdline:
                    pids.append(pid)
        return pids

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def memory_kb(pids: list[int]) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) summed over these processes, in kB, from /proc/<pid>/status."""
    total = {"VmRSS": 0, "VmHWM": 0}
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            key, _, value = line.partition(":")
            if key in total:
                total[key] += int(value.split()[0])
    return {"rss_kb": total["VmRSS"], "peak_rss_kb": total["VmHWM"]}


# --- set-up: a model and its hot tasks -------------------------------------------------------


def sine_support(rng: random.Random, points: int = 10) -> dict[str, list[Any]]:
    """One task of the sinusoid family: amplitude 0.1-5, phase 0-pi, x in [-5, 5]."""
    amplitude, phase = rng.uniform(0.1, 5.0), rng.uniform(0.0, math.pi)
    xs = [rng.uniform(-5.0, 5.0) for _ in range(points)]
    return {"inputs": [[x] for x in xs], "labels": [amplitude * math.sin(x - phase) for x in xs]}


def wait_job(client: httpx.Client, job_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in FINISHED:
            return job
        time.sleep(0.3)
    raise TimeoutError(f"job {job_id} did not finish in {timeout:.0f} s")


def train_and_adapt(server: Server, tasks: int, rng: random.Random) -> tuple[str, list[str]]:
    """A model id and `tasks` ready task ids of it."""
    r = server.client.post("/v1/jobs", json={"algorithm": "maml", "dataset": "sinusoid", "config": SERVED_MODEL})
    if r.status_code not in (200, 201, 202):
        raise RuntimeError(f"POST /v1/jobs: {r.status_code} {r.text}")
    job = wait_job(server.client, r.json()["id"], 300)
    if job["status"] != "succeeded":
        raise RuntimeError(f"training the served model {job['status']}: {job.get('error')}\n{server.logs()}")
    ids = []
    for _ in range(tasks):
        r = server.client.post(f"/v1/models/{job['model_id']}/tasks", json={"support": sine_support(rng), "wait": True})
        if r.status_code != 201:
            raise RuntimeError(f"adapting a hot task: {r.status_code} {r.text}\n{server.logs()}")
        ids.append(r.json()["id"])
    return str(job["model_id"]), ids


def stored_tasks(server: Server, database_url: str | None, model_id: str) -> int:
    """Task rows of the model in the real database (answered or not)."""
    from sqlalchemy import func, select

    from store.db import Task, session_scope
    from store.settings import Settings

    url = Settings.model_validate({"data_dir": server.data_dir, "DATABASE_URL": database_url}).sqlalchemy_url
    with session_scope(url) as session:
        return int(session.scalar(select(func.count()).select_from(Task).where(Task.model_id == model_id)) or 0)


# --- the load ----------------------------------------------------------------------------


@dataclass
class Plan:
    seconds: float
    clients: int
    burst: int
    burst_gap: tuple[float, float]
    quiet_start: float
    training_job: dict[str, Any]
    seed: int


@dataclass
class Recorder:
    """Every request's kind, start, end (perf_counter seconds), status (NO_ANSWER when none)
    and whether a 429/503 came with Retry-After; the reasons of requests without an answer."""

    samples: list[tuple[str, float, float, int, bool]] = field(default_factory=list)
    no_answer: Counter[str] = field(default_factory=Counter)
    burst_windows: list[tuple[float, float]] = field(default_factory=list)
    bursts: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    answered_task_ids: set[str] = field(default_factory=set)
    rss: list[tuple[float, int]] = field(default_factory=list)

    async def send(self, client: httpx.AsyncClient, kind: str, method: str, path: str, **kw: Any) -> httpx.Response | None:
        start = time.perf_counter()
        try:
            response = await client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            self.samples.append((kind, start, time.perf_counter(), NO_ANSWER, False))
            self.no_answer[f"{kind}: {type(exc).__name__}"] += 1
            return None
        shed = response.status_code in (429, 503) and "retry-after" in response.headers
        self.samples.append((kind, start, time.perf_counter(), response.status_code, shed))
        return response


async def predict_forever(base: str, path: str, body: bytes, stop_at: float, rec: Recorder) -> None:
    """One client on one keep-alive connection, its next request sent on each answer."""
    headers = {"Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUTS["prediction"], limits=httpx.Limits(max_connections=1)) as c:
        while time.perf_counter() < stop_at:
            await rec.send(c, "prediction", "POST", path, content=body, headers=headers)


async def burst(client: httpx.AsyncClient, model_id: str, size: int, rng: random.Random, rec: Recorder) -> None:
    """`size` adaptations at once, each its own support set; the window from the first send to the last answer."""
    bodies = [{"support": sine_support(rng), "wait": True} for _ in range(size)]
    start = time.perf_counter()
    answers = await asyncio.gather(*(rec.send(client, "adaptation", "POST", f"/v1/models/{model_id}/tasks", json=b)
                                     for b in bodies))
    end = time.perf_counter()
    rec.burst_windows.append((start, end))
    statuses = Counter(str(a.status_code) if a is not None else "no answer" for a in answers)
    for a in answers:
        if a is not None and a.status_code in (200, 201, 202):
            rec.answered_task_ids.add(a.json()["id"])
    rec.bursts.append({"size": size, "seconds": round(end - start, 2), "statuses": dict(statuses)})
    print(f"burst of {size}: {end - start:.1f} s, {dict(statuses)}", flush=True)


async def bursts_until(base: str, model_id: str, plan: Plan, t0: float, stop_at: float, rec: Recorder) -> None:
    """The first burst after the quiet start, then one 30-60 s (plan.burst_gap) after the previous
    one's last answer; none starts in the last 20% of the run, so that predictions overlap each."""
    rng = random.Random(plan.seed)
    limits = httpx.Limits(max_connections=plan.burst, max_keepalive_connections=plan.burst)
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUTS["adaptation"], limits=limits) as client:
        next_at = t0 + plan.quiet_start
        while next_at < stop_at - 0.2 * plan.seconds:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            at = round(time.perf_counter() - t0, 1)
            await burst(client, model_id, plan.burst, rng, rec)
            rec.bursts[-1]["at_s"] = at
            next_at = time.perf_counter() + rng.uniform(*plan.burst_gap)


async def train_until(base: str, plan: Plan, stop_at: float, rec: Recorder) -> None:
    """One training job at a time: submitted, polled every second, the next one when it ends."""
    body = {"algorithm": "maml", "dataset": "sinusoid", "config": plan.training_job}
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUTS["job"]) as client:
        while time.perf_counter() < stop_at:
            r = await rec.send(client, "job create", "POST", "/v1/jobs", json=body)
            if r is None or r.status_code not in (200, 201, 202):
                await asyncio.sleep(1.0)
                continue
            job, start = r.json(), time.perf_counter()
            while job["status"] not in FINISHED and time.perf_counter() < stop_at:
                await asyncio.sleep(1.0)
                r = await rec.send(client, "job status", "GET", f"/v1/jobs/{job['id']}")
                if r is not None and r.status_code == 200:
                    job = r.json()
            rec.jobs.append({"id": job["id"], "status": job["status"], "seconds": round(time.perf_counter() - start, 1),
                             "step": (job.get("progress") or {}).get("step"), "error": job.get("error")})


async def sample_rss(pids: list[int], every: float, t0: float, stop_at: float, rec: Recorder) -> None:
    while time.perf_counter() < stop_at:
        rec.rss.append((round(time.perf_counter() - t0, 1), memory_kb(pids)["rss_kb"]))
        await asyncio.sleep(every)


async def run_load(server: Server, model_id: str, task_ids: list[str], plan: Plan, rec: Recorder) -> float:
    """All the load at once for plan.seconds (bursts in flight are awaited); returns the load's seconds."""
    base = f"http://127.0.0.1:{server.port}"
    t0 = time.perf_counter()
    stop_at = t0 + plan.seconds
    rng = random.Random(plan.seed + 1)
    clients = [predict_forever(base, f"/v1/tasks/{task_ids[i % len(task_ids)]}/predictions",
                               json.dumps({"inputs": [[rng.uniform(-5, 5)]]}).encode(), stop_at, rec)
               for i in range(plan.clients)]
    await asyncio.gather(*clients, bursts_until(base, model_id, plan, t0, stop_at, rec), train_until(base, plan, stop_at, rec),
                         sample_rss(server.api_pids(), max(1.0, plan.seconds / 60), t0, stop_at, rec))
    return time.perf_counter() - t0


# --- figures ---------------------------------------------------------------------------------


def summary(samples: list[tuple[str, float, float, int, bool]], seconds: float) -> dict[str, Any]:
    """Requests a second, latency percentiles in ms over answered requests (any status), status counts."""
    answered = [end - start for _, start, end, status, _ in samples if status != NO_ANSWER]
    statuses = Counter("no answer" if s == NO_ANSWER else str(s) for _, _, _, s, _ in samples)

    def ms(value: float) -> float:
        return round(1000 * value, 2)

    return {
        "requests": len(samples), "per_second": round(len(samples) / seconds, 1) if seconds else 0.0,
        "p50_ms": ms(statistics.median(answered)) if answered else None,
        "p95_ms": ms(percentile(answered, 0.95)) if answered else None,
        "p99_ms": ms(percentile(answered, 0.99)) if answered else None,
        "max_ms": ms(max(answered)) if answered else None,
        "5xx": sum(1 for *_, s, shed in samples if s >= 500 and not shed),
        "shed": sum(1 for *_, shed in samples if shed),
        "no_answer": statuses["no answer"],
        "statuses": dict(sorted(statuses.items())),
    }


def overlaps(start: float, end: float, windows: list[tuple[float, float]]) -> bool:
    return any(start < w_end and end > w_start for w_start, w_end in windows)


def figures(rec: Recorder, seconds: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """One summary per request kind; and the predictions split by whether they overlapped a burst."""
    kinds: dict[str, list[tuple[str, float, float, int, bool]]] = {}
    for sample in rec.samples:
        kinds.setdefault(sample[0], []).append(sample)
    during, between = [], []
    for sample in kinds.get("prediction", []):
        (during if overlaps(sample[1], sample[2], rec.burst_windows) else between).append(sample)
    burst_seconds = sum(end - start for start, end in rec.burst_windows)
    split = {"prediction, during bursts": summary(during, burst_seconds),
             "prediction, between bursts": summary(between, seconds - burst_seconds)}
    return {kind: summary(samples, seconds) for kind, samples in kinds.items()}, split


def goals(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each goal: whether it holds and the figure it was judged on."""
    during = results["predictions"]["prediction, during bursts"]
    errors = sum(k["5xx"] for k in results["kinds"].values())
    unanswered = sum(k["no_answer"] for k in results["kinds"].values())
    rss = results["api_rss"]
    orphans = results["tasks"]["stored_unanswered"]
    ratio = during["p99_ms"] / during["p50_ms"] if during["p50_ms"] else None
    return {
        "no 5xx (shed 429/503 with Retry-After excepted)": {"pass": errors == 0, "value": errors},
        "every request answered (no timeout, no reset)": {"pass": unanswered == 0, "value": unanswered},
        "every stored task's id was given to its client": {"pass": orphans == 0, "value": orphans},
        "API RSS growth < 10%": {"pass": rss["growth_percent"] < 10, "value": f"{rss['growth_percent']}%"},
        "prediction p99 < 10x p50 while bursts run": {
            "pass": ratio is not None and ratio < 10,
            "value": f"{ratio:.1f}x ({during['p99_ms']} / {during['p50_ms']} ms)" if ratio else "no prediction during a burst",
        },
    }


def report(results: dict[str, Any]) -> str:
    """The figures as printed and as written to the .md file."""
    p = results["plan"]
    lines = [
        f"{p['seconds']:.0f} s of mixed load on `{' '.join(['fewshot serve', *results['serve_args'].split()])}` ({results['database']}, "
        f"{results['redis']}; MAML sinusoid, {p['tasks']} hot tasks): {p['clients']} prediction clients (one input a "
        f"request, keep-alive), bursts of {p['burst']} adaptations (wait true), one training job at a time "
        f"({p['training_job']['steps']} steps). Latency over answered requests, any status; shed = 429/503 with "
        "Retry-After; 5xx excludes shed.",
        "",
        "| requests | n | per s | p50 ms | p95 ms | p99 ms | max ms | 5xx | shed | no answer | statuses |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, k in {**results["kinds"], **results["predictions"]}.items():
        lines.append(f"| {kind} | {k['requests']} | {k['per_second']} | {k['p50_ms']} | {k['p95_ms']} | {k['p99_ms']} | "
                     f"{k['max_ms']} | {k['5xx']} | {k['shed']} | {k['no_answer']} | "
                     f"{', '.join(f'{s}: {n}' for s, n in k['statuses'].items())} |")
    rss = results["api_rss"]
    lines += [
        "",
        "Bursts (at s from the start, seconds to the last answer, statuses): "
        + "; ".join(f"{b['at_s']} s, {b['seconds']} s, {b['statuses']}" for b in results["bursts"]) + ".",
        "",
        f"API RSS {rss['start_mb']} MB before the load, {rss['end_mb']} MB after ({rss['growth_percent']:+}%), "
        f"peak {rss['peak_mb']} MB; pids {rss['pids']}. Tasks of the model stored: {results['tasks']['stored']}, "
        f"ids given to clients: {results['tasks']['answered']}. Training jobs: "
        + (", ".join(f"{j['status']} at step {j['step']} ({j['seconds']} s)" for j in results["jobs"]) or "none") + ".",
        f"CPU seconds per wall second: API {results['cpu']['api_per_s']}, this load generator "
        f"{results['cpu']['client_per_s']} ({os.cpu_count()} cores). Requests without an answer: "
        f"{results['no_answer'] or 'none'}. Tracebacks in the logs: {results['tracebacks']}.",
        "",
        "| goal | result | figure |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {'PASS' if g['pass'] else 'FAIL'} | {g['value']} |" for name, g in results["goals"].items()]
    return "\n".join(lines) + "\n"


# --- main ------------------------------------------------------------------------------------


def measure(args: argparse.Namespace, plan: Plan, data_dir: Path) -> dict[str, Any]:
    server = Server(data_dir, args.database_url, args.redis_url, args.serve_args.split())
    try:
        rng = random.Random(args.seed)
        model_id, task_ids = train_and_adapt(server, args.tasks, rng)
        for task_id in task_ids:  # warm: each task's state in the API's cache
            r = server.client.post(f"/v1/tasks/{task_id}/predictions", json={"inputs": [[0.0]]})
            if r.status_code != 200:
                raise RuntimeError(f"warm-up prediction: {r.status_code} {r.text}")
        pids = server.api_pids()
        me = os.getpid()
        memory0, cpu0, mine0 = memory_kb(pids), cpu_seconds(pids), cpu_seconds([me])
        print(f"model {model_id}, {len(task_ids)} hot tasks; API pids {pids}, RSS {memory0['rss_kb'] // 1024} MB; "
              f"{plan.seconds:.0f} s of load", flush=True)
        rec = Recorder()
        seconds = asyncio.run(run_load(server, model_id, task_ids, plan, rec))
        cpu = {"api_per_s": round((cpu_seconds(pids) - cpu0) / seconds, 2),
               "client_per_s": round((cpu_seconds([me]) - mine0) / seconds, 2)}
        time.sleep(2.0)  # requests the clients gave up on may still store their task
        memory1 = memory_kb(pids)
        stored = stored_tasks(server, args.database_url, model_id) - len(task_ids)
        tracebacks = server.tracebacks()
    finally:
        server.stop()
    growth = 100 * (memory1["rss_kb"] - memory0["rss_kb"]) / memory0["rss_kb"]
    kinds, predictions = figures(rec, seconds)
    results: dict[str, Any] = {
        "plan": {**vars(plan), "tasks": args.tasks}, "serve_args": args.serve_args,
        "database": "PostgreSQL" if args.database_url else "SQLite", "redis": "external Redis" if args.redis_url else "embedded Redis",
        "load_seconds": round(seconds, 1), "kinds": kinds, "predictions": predictions,
        "bursts": rec.bursts, "jobs": rec.jobs,
        "api_rss": {"pids": pids, "start_mb": round(memory0["rss_kb"] / 1024, 1), "end_mb": round(memory1["rss_kb"] / 1024, 1),
                    "peak_mb": round(memory1["peak_rss_kb"] / 1024, 1), "growth_percent": round(growth, 1),
                    "samples_mb": [(t, round(kb / 1024, 1)) for t, kb in rec.rss]},
        "tasks": {"stored": stored, "answered": len(rec.answered_task_ids),
                  "stored_unanswered": max(0, stored - len(rec.answered_task_ids))},
        "cpu": cpu, "no_answer": dict(rec.no_answer), "tracebacks": tracebacks,
    }
    results["goals"] = goals(results)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=5.0, help="length of the load")
    p.add_argument("--clients", type=int, default=16, help="concurrent prediction clients")
    p.add_argument("--burst", type=int, default=100, help="adaptations sent at once in each burst")
    p.add_argument("--burst-gap", type=float, nargs=2, default=(30.0, 60.0), metavar=("MIN", "MAX"),
                   help="seconds from one burst's last answer to the next burst (uniform)")
    p.add_argument("--quiet-start", type=float, default=15.0, help="seconds of predictions before the first burst")
    p.add_argument("--tasks", type=int, default=4, help="hot tasks the prediction clients share")
    p.add_argument("--database-url", help="PostgreSQL (e.g. postgresql://postgres@127.0.0.1:5432/test); default SQLite in the data folder")
    p.add_argument("--redis-url", help="an external Redis (e.g. redis://127.0.0.1:6379/9, emptied by nobody); default the embedded one")
    p.add_argument("--serve-args", default="", help="extra `fewshot serve` options, e.g. '--api-workers 2'")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="load", help="results file name in benchmarks/results/")
    p.add_argument("--keep", action="store_true", help="keep the data folder (logs, database) for inspection")
    p.add_argument("--check", action="store_true", help="exit 1 when a goal fails")
    p.add_argument("--smoke", action="store_true", help="10 s, 4 clients, a burst of 10: checks the script runs")
    args = p.parse_args()
    training_job = TRAINING_JOB
    if args.smoke:
        args.minutes, args.clients, args.burst, args.quiet_start, args.tasks = 10 / 60, 4, 10, 2.0, 2
        args.burst_gap, training_job = (3.0, 4.0), SMOKE_TRAINING_JOB
        args.name = "load-smoke" if args.name == "load" else args.name
    plan = Plan(seconds=60 * args.minutes, clients=args.clients, burst=args.burst, burst_gap=tuple(args.burst_gap),
                quiet_start=args.quiet_start, training_job=training_job, seed=args.seed)
    data_dir = Path(tempfile.mkdtemp(prefix="fewshot-load-bench-"))
    try:
        results = measure(args, plan, data_dir)
    finally:
        if args.keep:
            print(f"data folder kept: {data_dir}", flush=True)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    text = report(results)
    print(text, flush=True)
    write_results(args.name, results, text)
    if args.check and not all(g["pass"] for g in results["goals"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
