"""Predictions over HTTP against a real `fewshot serve`: hot, 16 concurrent clients, cold.

A tiny MAML Conv4-64 is meta-trained on Omniglot 5-way 1-shot (a few steps: the weights do
not matter for speed), one task is adapted through POST /v1/models/{id}/tasks, then:

- hot: one client, one 28x28 image (784 floats as JSON) per request, the task's state in the
  API's LRU cache; p50 and p99 over keep-alive loopback;
- concurrent: 16 clients at once, predictions a second, with a lean asyncio client and with
  locust headless (FastHttpUser); the load generator's CPU beside the API's, since both share
  the machine's cores;
- cold: N tasks stored (rows bulk-inserted in the real database, a state file for each task id
  in the real artifact store: 3,000 real copies, the rest hard links to them, since a Conv4-64
  phi is 450 KB), each request to a task never asked before (not in the LRU cache) whose file
  is its own and was evicted from the page cache (posix_fadvise DONTNEED): read from disk.

Loopback only, every phase bounded in time; the data folder is a temp folder, deleted after.

    .venv/bin/python benchmarks/http_predictions.py --smoke          # seconds: checks the script runs
    .venv/bin/python benchmarks/http_predictions.py                  # the issue's figures (100,000 tasks)
    .venv/bin/python benchmarks/http_predictions.py --profile        # also py-spy on the API under load
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import http.client
import json
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
from pathlib import Path
from typing import Any

from reporting import DATASETS, RESULTS, ROOT, cpu_seconds, percentile, write_results

BIN = Path(sys.executable).parent
TRAIN_CONFIG = {"steps": 2, "meta_batch_size": 2, "k_query": 1, "channels": 64, "eval_episodes": 2, "inner_lr": 0.4}


def summary(latencies: list[float], errors: int, seconds: float) -> dict[str, float]:
    """Milliseconds p50/p99 and requests a second."""
    return {
        "requests": len(latencies), "errors": errors, "seconds": round(seconds, 2),
        "per_second": round(len(latencies) / seconds, 1) if seconds else 0.0,
        "p50_ms": round(1000 * statistics.median(latencies), 3) if latencies else float("nan"),
        "p99_ms": round(1000 * percentile(latencies, 0.99), 3) if latencies else float("nan"),
    }


def api_cpu(seconds: float, elapsed: float, requests: int) -> dict[str, float]:
    """The API's CPU per wall second and per request: the per-request figure moves less than
    latency when other processes share the cores."""
    return {"api_cpu_per_s": round(seconds / elapsed, 2), "api_cpu_ms_per_request": round(1000 * seconds / max(requests, 1), 2)}


class Server:
    """`fewshot serve` on a free loopback port with its own data folder."""

    def __init__(self, data_dir: Path, extra_args: list[str], tree: Path | None = None) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
        env.update(FEWSHOT_DATA_DIR=str(data_dir), FEWSHOT_OMNIGLOT_DIR=str(DATASETS / "omniglot"))
        argv = [str(BIN / "fewshot")]
        if tree is not None:  # another checkout's code (a baseline), first on the path of the API and its workers
            env["PYTHONPATH"] = str(tree.resolve())
            entry = "cli.main" if (tree / "cli" / "main.py").exists() else "service.cli"  # older checkouts: service/cli.py
            argv = [sys.executable, "-c", f"from {entry} import main; main()"]
        log = (data_dir / "serve.log").open("ab")
        self.process = subprocess.Popen([*argv, "serve", "--port", str(self.port), *extra_args],
                                        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tree)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"fewshot serve exited:\n{(data_dir / 'serve.log').read_text()[-3000:]}")
            try:
                if self.request("GET", "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError("fewshot serve did not get ready")

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """The control requests (not timed): a connection each, since uvicorn closes idle ones after 5 s."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        return response.status, json.loads(raw) if raw else None

    def api_pids(self) -> list[int]:
        """The serve process and any API worker processes (the celery workers and Redis excluded)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        pids = [self.process.pid]
        for pid in children.read_text().split() if children.exists() else []:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"celery" not in cmdline and b"valkey" not in cmdline and b"redis" not in cmdline:
                pids.append(int(pid))
        return pids

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def train_and_adapt(server: Server, images: Any) -> tuple[str, str]:
    """A model id and a ready task id (5 support images, one per class)."""
    status, job = server.request("POST", "/v1/jobs", {"algorithm": "maml", "dataset": "omniglot", "config": TRAIN_CONFIG})
    assert status in (200, 201, 202), job
    deadline = time.monotonic() + 600
    while job["status"] not in ("succeeded", "failed", "cancelled"):
        if time.monotonic() > deadline:
            raise TimeoutError("training did not finish in 10 minutes")
        time.sleep(0.5)
        job = server.request("GET", f"/v1/jobs/{job['id']}")[1]
    assert job["status"] == "succeeded", job
    support = {"inputs": [images[i].tolist() for i in range(5)], "labels": [f"c{i}" for i in range(5)]}
    status, task = server.request("POST", f"/v1/models/{job['model_id']}/tasks", {"support": support})
    assert status == 201, task
    return job["model_id"], task["id"]


def prediction_body(image: Any) -> bytes:
    return json.dumps({"inputs": [image.tolist()]}).encode()


def raw_body(image: Any) -> bytes:
    """The same image as application/octet-stream: float32 little-endian in the model's input shape."""
    import numpy as np

    return np.asarray(image, dtype="<f4").tobytes()


def png_body(image: Any) -> bytes:
    """The same image as image/png (dark on white, as a scan is: the API inverts it back)."""
    from models.images import encode_png

    return encode_png(1.0 - image[0].numpy())


def sequential(server: Server, paths: list[str], body: bytes, seconds: float, content_type: str = "application/json") -> dict[str, float]:
    """One keep-alive client, one request at a time, each path once (cycled), for at most `seconds`."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port)
    headers = {"Content-Type": content_type}
    latencies: list[float] = []
    errors = 0
    pids = server.api_pids()
    cpu0, t0 = cpu_seconds(pids), time.perf_counter()
    for path in paths:
        start = time.perf_counter()
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        end = time.perf_counter()
        if response.status == 200:
            latencies.append(end - start)
        else:
            errors += 1
        if end - t0 > seconds:
            break
    elapsed = time.perf_counter() - t0
    conn.close()
    return {**summary(latencies, errors, elapsed), **api_cpu(cpu_seconds(pids) - cpu0, elapsed, len(latencies) + errors)}


async def _client(port: int, request: bytes, stop: float, latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    loop = asyncio.get_running_loop()
    while loop.time() < stop:
        start = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await reader.readexactly(length)
        if head.startswith(b"HTTP/1.1 200"):
            latencies.append(time.perf_counter() - start)
        else:
            errors.append(1)
    writer.close()


def concurrent_asyncio(server: Server, path: str | list[str], body: bytes, clients: int, seconds: float,
                       content_type: str = "application/json") -> dict[str, float]:
    """`clients` keep-alive connections in one asyncio loop, each sending its next request on the answer
    (client i to paths[i % len(paths)] when given several paths)."""
    paths = [path] if isinstance(path, str) else path
    requests = [(f"POST {p} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n").encode() + body for p in paths]
    latencies: list[float] = []
    errors: list[int] = []
    pids = server.api_pids()
    me = os.getpid()

    async def run() -> None:
        stop = asyncio.get_running_loop().time() + seconds
        await asyncio.gather(*(_client(server.port, requests[i % len(requests)], stop, latencies, errors) for i in range(clients)))

    cpu0, mine0, t0 = cpu_seconds(pids), cpu_seconds([me]), time.perf_counter()
    asyncio.run(run())
    elapsed = time.perf_counter() - t0
    return {**summary(latencies, len(errors), elapsed), **api_cpu(cpu_seconds(pids) - cpu0, elapsed, len(latencies) + len(errors)),
            "client_cpu_per_s": round((cpu_seconds([me]) - mine0) / elapsed, 2)}


def concurrent_wrk(server: Server, path: str, body: bytes, clients: int, seconds: int, folder: Path,
                   content_type: str = "application/json") -> dict[str, float]:
    """wrk (C, one thread, `clients` keep-alive connections) for `seconds`; p50/p99 from --latency."""
    (folder / "wrk-body").write_bytes(body)
    script = folder / "wrk.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f'wrk.headers["Content-Type"] = "{content_type}"\n'
        f'local f = io.open("{folder / "wrk-body"}", "rb"); wrk.body = f:read("*a"); f:close()\n'
    )
    pids = server.api_pids()
    cpu0, t0 = cpu_seconds(pids), time.perf_counter()
    process = subprocess.Popen(["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--latency", "-s", str(script),
                                f"http://127.0.0.1:{server.port}{path}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wrk_cpu = 0.0
    while process.poll() is None:
        wrk_cpu = max(wrk_cpu, cpu_seconds([process.pid]))
        time.sleep(0.2)
    out = process.stdout.read() if process.stdout else ""
    elapsed = time.perf_counter() - t0
    used = cpu_seconds(pids) - cpu0

    def ms(text: str) -> float:
        value = float("".join(c for c in text if c.isdigit() or c == "."))
        return value / 1000 if text.endswith("us") else value * 1000 if text.endswith("s") and not text.endswith("ms") else value

    figures: dict[str, Any] = {"errors": 0}
    for line in out.splitlines():
        words = line.split()
        if line.strip().startswith("50.000%") or (len(words) == 2 and words[0] == "50%"):
            figures["p50_ms"] = round(ms(words[1]), 3)
        elif len(words) == 2 and words[0] == "99%":
            figures["p99_ms"] = round(ms(words[1]), 3)
        elif line.startswith("Requests/sec:"):
            figures["per_second"] = round(float(words[1]), 1)
        elif "requests in" in line:
            figures["requests"] = int(words[0])
        elif line.strip().startswith("Non-2xx"):
            figures["errors"] += int(words[-1])
        elif line.strip().startswith("Socket errors"):
            figures["errors"] += sum(int(w.strip(",")) for w in words[2:] if w.strip(",").isdigit())
    if "per_second" not in figures:
        raise RuntimeError(f"wrk said:\n{out}")
    return {**figures, **api_cpu(used, elapsed, figures.get("requests", 0)), "client_cpu_per_s": round(wrk_cpu / elapsed, 2)}


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over repeated runs (and the runs themselves)."""
    keys = [k for k, v in runs[0].items() if isinstance(v, int | float)]
    return {**{k: round(statistics.median(r[k] for r in runs), 3) for k in keys}, "repeats": len(runs),
            "per_run": [{k: r[k] for k in ("p50_ms", "p99_ms", "per_second", "errors") if k in r} for r in runs]}


def concurrent_locust(server: Server, task_id: str, image: Any, clients: int, seconds: int, folder: Path) -> dict[str, float]:
    """locust headless, FastHttpUser, `clients` users, for `seconds`; its CPU from /proc."""
    (folder / "body.json").write_bytes(prediction_body(image))
    env = {**os.environ, "FEWSHOT_BENCH_TASK": task_id, "FEWSHOT_BENCH_BODY": str(folder / "body.json")}
    argv = [str(BIN / "locust"), "-f", str(ROOT / "benchmarks" / "locustfile.py"), "--headless", "-u", str(clients),
            "-r", str(clients), "-t", f"{seconds}s", "--host", f"http://127.0.0.1:{server.port}",
            "--csv", str(folder / "locust"), "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "2"]
    pids = server.api_pids()
    cpu0, t0 = cpu_seconds(pids), time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    locust_cpu = 0.0
    while process.poll() is None:
        locust_cpu = max(locust_cpu, cpu_seconds([process.pid]))
        time.sleep(0.2)
    elapsed = time.perf_counter() - t0
    used = cpu_seconds(pids) - cpu0
    rows = list(csv.DictReader((folder / "locust_stats.csv").open()))
    total = next(r for r in rows if r["Name"] == "Aggregated")
    return {
        "requests": int(total["Request Count"]), "errors": int(total["Failure Count"]),
        "per_second": round(float(total["Requests/s"]), 1), "p50_ms": float(total["50%"]), "p99_ms": float(total["99%"]),
        **api_cpu(used, elapsed, int(total["Request Count"])), "client_cpu_per_s": round(locust_cpu / elapsed, 2),
    }


def store_tasks(server: Server, model_id: str, task_id: str, n: int, distinct: int) -> list[str]:
    """n more ready tasks of the model: real rows, and a state file each in the real artifact store.

    The first `distinct` tasks get their own copy of the adapted task's phi (450 KB for
    Conv4-64); the others' files are hard links to those copies, so that 100,000 tasks take
    1.4 GB rather than 45 GB. Returns the ids, the `distinct` ones first: the cold phase asks
    only those, each once, so every timed read is of a file no other request has read.
    """
    from sqlalchemy import insert

    from store.artifacts import state_key
    from store.db import LOCAL_TENANT, Task, get_engine, utcnow
    from store.ids import new_id

    artifacts = server.data_dir / "artifacts"
    phi = (artifacts / state_key(task_id)).read_bytes()
    ids = [new_id("tsk") for _ in range(n)]
    now = utcnow()
    for i, tid in enumerate(ids):
        path = artifacts / state_key(tid)
        path.parent.mkdir(parents=True)
        if i < distinct:
            path.write_bytes(phi)
        else:
            os.link(artifacts / state_key(ids[i % distinct]), path)
    rows = [{"id": tid, "tenant_id": LOCAL_TENANT, "model_id": model_id, "status": "ready", "labels": [f"c{i}" for i in range(5)],
             "support_size": 5, "scalar_targets": False, "options": {}, "artifact": state_key(tid), "created_at": now,
             "ready_at": now} for tid in ids]
    engine = get_engine(f"sqlite:///{(server.data_dir / 'fewshot.db').resolve()}")
    with engine.begin() as conn:
        for start in range(0, n, 10_000):
            conn.execute(insert(Task), rows[start:start + 10_000])
    return ids


def evict(paths: list[Path]) -> None:
    """Drop these files from the page cache, so that the next read goes to the disk."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def profile(server: Server, path: str, body: bytes, seconds: int, clients: int, out: Path) -> str:
    """py-spy on the API process while `clients` asyncio clients load it: a flamegraph and a top-style text."""
    pid = server.process.pid
    spy = subprocess.Popen([str(BIN / "py-spy"), "record", "--pid", str(pid), "-d", str(seconds), "-r", "200", "-f", "raw",
                            "-o", str(out.with_suffix(".txt"))], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)
    concurrent_asyncio(server, path, body, clients, seconds - 1)
    spy.wait(60)
    return top_of(out.with_suffix(".txt"))


IDLE = ("Condition.wait", "EpollSelector.select", "Queue.get", "SimpleQueue.get", "Event.wait", "Condition._acquire_restore")
# Inclusive shares of the busy samples, by the part of the serving path a frame belongs to.
PARTS = {
    "torch forward (learner.predict)": "predict (models/",
    "route body (_predict: SQL, auth, parse, answer)": "_predict (service/routes/tasks.py",
    "SQL (SQLAlchemy, sqlite3)": "sqlalchemy/",
    "auth and rate limit": "tenant_of (",
    "input parsing (parse_inputs)": "parse_inputs (",
    "answer JSON (pydantic dump)": "model_dump_json (",
    "request JSON (json.loads)": "json/decoder.py",
    "FastAPI/Starlette routing and dependencies": "fastapi/routing.py",
    "thread-pool hop (anyio, event-loop side)": "run_sync_in_worker_thread",
    "HTTP parsing and writing (uvicorn h11)": "uvicorn/protocols/http/",
    "access log (logging)": "logging/__init__.py",
    "metrics (prometheus_client)": "prometheus_client/",
}


def top_of(raw: Path, n: int = 25) -> str:
    """Busy samples only (threads waiting on a lock, a queue or epoll left out): the share of each
    part of the serving path, then own and total shares per function, from py-spy's raw stacks."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    parts: dict[str, int] = {}
    samples = idle = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [f for f in stack.split(";") if f]
        k = int(count)
        if not frames or frames[-1].startswith(IDLE):
            idle += k
            continue
        samples += k
        own[frames[-1]] = own.get(frames[-1], 0) + k
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + k
        for part, marker in PARTS.items():
            if any(marker in f for f in frames):
                parts[part] = parts.get(part, 0) + k
    lines = [f"{samples} busy samples ({idle} idle left out); inclusive % of busy samples by part:", ""]
    lines += [f"{100 * k / samples:5.1f}  {part}" for part, k in sorted(parts.items(), key=lambda kv: -kv[1])]
    lines += ["", "own% total% function (top by own):"]
    for frame, k in sorted(own.items(), key=lambda kv: -kv[1])[:n]:
        lines.append(f"{100 * k / samples:5.1f} {100 * total[frame] / samples:5.1f}  {frame}")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="two seconds of each phase, 200 stored tasks")
    p.add_argument("--tasks", type=int, default=100_000, help="tasks stored for the cold phase")
    p.add_argument("--distinct", type=int, default=3000, help="stored tasks with their own state file (the others hard-link to these)")
    p.add_argument("--seconds", type=int, default=15, help="length of each phase")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--serve-args", default="", help="extra `fewshot serve` options for this tree (not the baseline), e.g. '--api-workers 2'")
    p.add_argument("--no-locust", action="store_true")
    p.add_argument("--profile", action="store_true", help="py-spy the API under the concurrent load")
    p.add_argument("--name", default="http_predictions")
    p.add_argument("--repeats", type=int, default=3, help="runs of each hot and concurrent phase, interleaved across servers: medians reported")
    p.add_argument("--levels", default="10,1000,100000", help="stored-task counts at which hot p50 and 16-task concurrent rate are measured")
    p.add_argument("--no-wrk", action="store_true")
    p.add_argument("--baseline", type=Path, help="another checkout (e.g. `git worktree add /tmp/base HEAD`) served and measured alike, phase by phase")
    args = p.parse_args()
    if not args.no_locust and not (BIN / "locust").exists():  # the `bench` extra: CI's smoke runs go without it
        print("locust not installed (pip install -e '.[bench]'): its phase is skipped")
        args.no_locust = True
    if not args.no_wrk and shutil.which("wrk") is None:
        print("wrk not installed (apt-get install wrk): its phase is skipped")
        args.no_wrk = True
    levels = [int(n) for n in args.levels.split(",") if n]
    if args.smoke:
        args.tasks, args.distinct, args.seconds, args.repeats, levels = 200, 100, 2, 1, [10, 200]
        args.name = "http_predictions-smoke" if args.name == "http_predictions" else args.name
    args.tasks = max([args.tasks, *levels]) if levels else args.tasks

    from models.omniglot import load_omniglot

    images = load_omniglot(DATASETS / "omniglot", Path("/tmp/fewshot-bench-cache")).images[:20, 0][:, None]  # [20, 1, 28, 28]
    folder = Path(tempfile.mkdtemp(prefix="fewshot-http-bench-"))
    trees = {"this tree": None, **({"baseline": args.baseline} if args.baseline else {})}
    results: dict[str, Any] = {"serve_args": args.serve_args, "clients": args.clients, "tasks": args.tasks, "distinct": args.distinct,
                               "baseline": str(args.baseline) if args.baseline else None, "runs": {}}
    servers: dict[str, Server] = {}
    try:
        for label, tree in trees.items():
            servers[label] = Server(folder / label.replace(" ", "-"), [] if tree else args.serve_args.split(), tree)
        targets = {label: train_and_adapt(server, images) for label, server in servers.items()}
        body = prediction_body(images[5])
        runs: dict[str, dict[str, Any]] = {label: {} for label in servers}
        results["runs"] = runs

        def phase(name: str, run: Any, this_tree_only: bool = False, repeats: int = args.repeats) -> None:
            """One phase on every server in turn, `repeats` times interleaved, so that they share the
            machine's moods alike; the medians are kept."""
            labels = [label for label in servers if label == "this tree" or not this_tree_only]
            done: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
            for _ in range(repeats):
                for label in labels:
                    done[label].append(run(label, servers[label], *targets[label]))
            for label in labels:
                runs[label][name] = median_of(done[label]) if repeats > 1 else done[label][0]
                print(f"{label}: {name}", {k: v for k, v in runs[label][name].items() if k != "per_run"}, flush=True)

        def hot_path(task_id: str) -> str:
            return f"/v1/tasks/{task_id}/predictions"

        raw, png = raw_body(images[5]), png_body(images[5])
        for label, server in servers.items():
            status, answer = server.request("POST", hot_path(targets[label][1]), {"inputs": [images[5].tolist()]})
            assert status == 200 and len(answer["probabilities"][0]) == 5, answer
            sequential(server, [hot_path(targets[label][1])] * 200, body, args.seconds)  # warm-up
        for name, content, kind, only in (("", body, "application/json", False), ("_raw", raw, "application/octet-stream", True),
                                          ("_png", png, "image/png", True)):
            phase(f"hot{name}", lambda label, server, model_id, task_id, content=content, kind=kind:
                  sequential(server, [hot_path(task_id)] * 10**6, content, args.seconds, kind), only)
            phase(f"concurrent_asyncio{name}", lambda label, server, model_id, task_id, content=content, kind=kind:
                  concurrent_asyncio(server, hot_path(task_id), content, args.clients, args.seconds, kind), only)
            if not args.no_wrk and name != "_png":
                phase(f"concurrent_wrk{name}", lambda label, server, model_id, task_id, content=content, kind=kind:
                      concurrent_wrk(server, hot_path(task_id), content, args.clients, args.seconds, folder, kind), only)
        if not args.no_locust:
            phase("concurrent_locust", lambda label, server, model_id, task_id:
                  concurrent_locust(server, task_id, images[5], args.clients, args.seconds, folder), repeats=1)
        if args.profile:
            server, task_id = servers["this tree"], targets["this tree"][1]
            top = profile(server, hot_path(task_id), body, max(args.seconds, 10), args.clients, folder / "py-spy")
            RESULTS.mkdir(parents=True, exist_ok=True)
            (RESULTS / f"{args.name}-profile.txt").write_text(top)
            results["profile"] = f"{args.name}-profile.txt"
            print(top[:3000], flush=True)
        from store.artifacts import state_key

        stored: dict[str, list[str]] = {label: [] for label in servers}
        results["levels"] = levels
        for level in levels:  # cost against stored tasks: hot p50 on one stored task, 16 clients on 16 of them
            for label, server in servers.items():
                t0 = time.perf_counter()
                more = level - len(stored[label])
                stored[label] += store_tasks(server, *targets[label], more, min(more, args.distinct))
                runs[label][f"store_seconds_{level}"] = round(time.perf_counter() - t0, 1)
                print(f"{label}: {level} tasks stored (+{more} in {runs[label][f'store_seconds_{level}']} s)", flush=True)
                asked = [hot_path(t) for t in stored[label][:args.clients]]
                sequential(server, asked * 5, body, args.seconds)  # warm: rows and states cached
            phase(f"hot_{level}", lambda label, server, model_id, task_id:
                  sequential(server, [hot_path(stored[label][0])] * 10**6, body, args.seconds))
            phase(f"concurrent_{level}", lambda label, server, model_id, task_id:
                  concurrent_asyncio(server, [hot_path(t) for t in stored[label][:args.clients]], body, args.clients, args.seconds))
        cold_paths: dict[str, list[str]] = {}
        for label, server in servers.items():
            if len(stored[label]) < args.tasks:
                more = args.tasks - len(stored[label])
                stored[label] += store_tasks(server, *targets[label], more, min(more, args.distinct))
            # Never asked, and with a file of its own: the last level's first `distinct` tasks.
            fresh = stored[label][-(args.tasks - (levels[-2] if len(levels) > 1 else 0)):][:args.distinct]
            cold_ids = [t for t in fresh if t not in stored[label][:args.clients]]
            random.Random(0).shuffle(cold_ids)
            evict([server.data_dir / "artifacts" / state_key(t) for t in cold_ids])
            cold_paths[label] = [hot_path(t) for t in cold_ids]
        phase("cold", lambda label, server, model_id, task_id: sequential(server, cold_paths[label], body, args.seconds), repeats=1)
        write_results(args.name, results, markdown(results))  # before the clean-up: 100,000 folders take minutes to delete
        try:
            plot(results, RESULTS / f"{args.name}.png")
        except ImportError:
            print("matplotlib not installed (the bench extra): no plot", flush=True)
    finally:
        for server in servers.values():
            server.stop()
        print(f"deleting {folder}", flush=True)
        shutil.rmtree(folder, ignore_errors=True)


def markdown(r: dict[str, Any]) -> str:
    n = r["clients"]
    rows = [("hot, 1 client, JSON", "hot", "p50 <= 3 ms"), ("hot, 1 client, octet-stream float32", "hot_raw", "p50 <= 3 ms"),
            ("hot, 1 client, image/png", "hot_png", "p50 <= 3 ms"),
            (f"hot, {n} clients, asyncio client, JSON", "concurrent_asyncio", ">= 1000/s, p99 < 25 ms"),
            (f"hot, {n} clients, asyncio client, octet-stream", "concurrent_asyncio_raw", ">= 1000/s, p99 < 25 ms"),
            (f"hot, {n} clients, asyncio client, image/png", "concurrent_asyncio_png", ">= 1000/s, p99 < 25 ms"),
            (f"hot, {n} connections, wrk, JSON", "concurrent_wrk", ">= 1000/s, p99 < 25 ms"),
            (f"hot, {n} connections, wrk, octet-stream", "concurrent_wrk_raw", ">= 1000/s, p99 < 25 ms"),
            (f"hot, {n} clients, locust FastHttpUser", "concurrent_locust", ">= 1000/s"),
            *[(f"{level:,} tasks stored: hot, 1 client", f"hot_{level}", "") for level in r.get("levels", [])],
            *[(f"{level:,} tasks stored: {n} clients on {n} tasks", f"concurrent_{level}", "") for level in r.get("levels", [])],
            (f"cold, {r['tasks']:,} tasks stored, evicted from page cache", "cold", "< 10 ms p50")]
    out = ["| code | phase | target | p50 ms | p99 ms | per s | requests | errors | API CPU/s | API CPU ms/request | client CPU/s | runs |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, key, target in rows:
        for code, run in r["runs"].items():
            if key in run:
                m = run[key]
                out.append(f"| {code} | {label} | {target} | {m['p50_ms']} | {m['p99_ms']} | {m['per_second']} | {m['requests']} | "
                           f"{m['errors']} | {m.get('api_cpu_per_s', '')} | {m.get('api_cpu_ms_per_request', '')} | "
                           f"{m.get('client_cpu_per_s', '')} | {m.get('repeats', 1)} |")
    stored = ", ".join(f"{code}: " + "/".join(f"{v} s" for k, v in run.items() if k.startswith("store_seconds")) for code, run in r["runs"].items())
    out.append(f"\n`fewshot serve {r['serve_args']}`{'; baseline: ' + r['baseline'] if r['baseline'] else ''}. "
               f"Tasks stored per server at each level (seconds: {stored}): rows bulk-inserted through store/ (HTTP would take "
               f"hours for 100,000), a state file each ({r.get('distinct', '?'):,} real copies per level, the others hard links; "
               "the cold phase asks only tasks with their own copy, each once, evicted from the page cache first). Figures "
               "with runs > 1 are medians of that many interleaved runs. CPU/s: CPU seconds per wall second (2 = both cores).\n")
    return "\n".join(out) + "\n"


def plot(r: dict[str, Any], path: Path) -> None:
    """Predictions/s (16 clients on 16 tasks) and hot p50 against tasks stored, per code version."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = r.get("levels", [])
    fig, (rate, p50) = plt.subplots(1, 2, figsize=(10, 4))
    for code, run in r["runs"].items():
        rate.plot(levels, [run[f"concurrent_{n}"]["per_second"] for n in levels], marker="o", label=code)
        p50.plot(levels, [run[f"hot_{n}"]["p50_ms"] for n in levels], marker="o", label=code)
    rate.axhline(1000, color="grey", linestyle="--", linewidth=1, label="target 1,000/s")
    p50.axhline(3, color="grey", linestyle="--", linewidth=1, label="target 3 ms")
    for ax, title in ((rate, f"predictions/s, {r['clients']} clients on {r['clients']} tasks"), (p50, "hot p50 ms, 1 client")):
        ax.set_xscale("log")
        ax.set_xlabel("tasks stored")
        ax.set_title(title)
        ax.legend()
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
