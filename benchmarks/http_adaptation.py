"""Adapting one task over HTTP through the `adapt` queue, beside the same adaptation in-process.

Starts a real `fewshot serve` (API, train and adapt workers, embedded Redis, SQLite, a temp
data directory), meta-trains a small MAML Conv4 on Omniglot 5-way 1-shot for a few steps (we
measure latency, not accuracy) with 5 adaptation steps, then POSTs tasks with `wait` (five
PNG images as base64, string labels) one after another over one keep-alive connection,
timing each on the client. Interleaved with them, this process adapts the same support set
with the model's learner loaded as the worker loads it (`workers.pipelines.model_learner`),
so both figures share the machine's noise. The first task (a worker that has not yet seen
the model) is reported apart as the cold adaptation.

Where the HTTP time goes comes from the API's `Server-Timing` header (parse, store, ledger,
send, wait) and the adapt worker's per-task log line (ledger read, learner, support, adapt,
save, ledger write); what neither covers is HTTP, dependencies, the queue and the result.

    python benchmarks/http_adaptation.py --smoke     # seconds: 8 channels, 3 tasks
    python benchmarks/http_adaptation.py             # Conv4-64, 40 tasks
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import re
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

import httpx
from reporting import DATASETS, ROOT, setup, write_results

from models.images import encode_png
from models.learners import AdaptOptions
from models.omniglot import load_omniglot, split_characters
from service.inputs import parse_inputs, parse_labels
from store.db import Model, session_scope
from store.settings import Settings

BENCH_CACHE = Path(tempfile.gettempdir()) / "fewshot-bench-cache"
WORKER_LINE = re.compile(r"task (tsk_\w+) (\w+) in ([\d.]+) ms: (.*)$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """`fewshot serve` in a child process on an empty data directory, stopped with Ctrl-C."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
        self.env.update(env, FEWSHOT_DATA_DIR=str(data_dir))
        self.process: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=300)

    def __enter__(self) -> Served:
        fewshot = Path(sys.executable).parent / "fewshot"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with (self.data_dir / "serve.log").open("ab") as out:
            self.process = subprocess.Popen([str(fewshot), "serve", "--port", str(self.port)], env=self.env,
                                            stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"fewshot serve exited:\n{self.logs()}")
            try:
                if self.client.get("/readyz").status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"fewshot serve not ready in 120 s:\n{self.logs()}")

    def logs(self) -> str:
        files = [self.data_dir / "serve.log", *sorted((self.data_dir / "logs").glob("*.log"))]
        return "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}" for f in files if f.exists())

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def train_model(served: Served, config: dict[str, Any]) -> str:
    r = served.client.post("/v1/jobs", json={"algorithm": "maml", "dataset": "omniglot", "config": config})
    r.raise_for_status()
    job_id = r.json()["id"]
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        job = served.client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            if job["status"] != "succeeded":
                raise RuntimeError(f"training job {job_id} {job['status']}: {job.get('error')}\n{served.logs()}")
            return str(job["model_id"])
        time.sleep(0.3)
    raise TimeoutError(f"training job {job_id} did not finish:\n{served.logs()}")


def supports(n: int, seed: int) -> list[dict[str, list[str]]]:
    """n support sets of 5 held-out characters, one drawing each, as the API takes them."""
    data = load_omniglot(DATASETS / "omniglot", BENCH_CACHE)
    test_chars = split_characters(data, by="character", seed=0)["test"]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        chars = rng.sample(test_chars, 5)
        pngs = [base64.b64encode(encode_png(1.0 - data.images[i, rng.randrange(20)].numpy())).decode() for i in chars]
        out.append({"inputs": pngs, "labels": [data.characters[i] for i in chars]})
    return out


def server_timing(header: str) -> dict[str, float]:
    """`name;dur=1.2, other;dur=3` as {name: ms}."""
    out = {}
    for part in header.split(","):
        name, _, dur = part.strip().partition(";dur=")
        if dur:
            out[name] = float(dur)
    return out


def worker_timings(log_file: Path) -> dict[str, dict[str, float]]:
    """The adapt worker's per-task line: task id -> {total, stage: ms}."""
    out: dict[str, dict[str, float]] = {}
    if not log_file.exists():
        return out
    for line in log_file.read_text(errors="replace").splitlines():
        m = WORKER_LINE.search(line)
        if m:
            stages = {"total": float(m.group(3))}
            for part in m.group(4).split(","):
                name, _, ms = part.strip().rpartition(" ")
                stages[name] = float(ms)
            out[m.group(1)] = stages
    return out


def adapt_worker_pid(served: Served) -> int | None:
    """The main process of the adapt worker that `fewshot serve` started."""
    assert served.process is not None
    out = subprocess.run(["pgrep", "-P", str(served.process.pid), "-f", "--", "worker -Q adapt"], capture_output=True, text=True)
    pids = [int(p) for p in out.stdout.split()]
    return pids[0] if pids else None


def restart_adapt_worker(served: Served, timeout: float = 120) -> float:
    """Stop the adapt worker (the supervisor starts a fresh one), wait until its pool process has
    warmed up (its log says so), and return how long that warm-up took."""
    log_file = served.data_dir / "logs" / "worker-adapt.log"
    before = log_file.read_text(errors="replace").count("warmed up in")
    old = adapt_worker_pid(served)
    assert old is not None, "no adapt worker found"
    os.kill(old, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_file.read_text(errors="replace")
        if text.count("warmed up in") > before:
            return float(re.findall(r"warmed up in ([\d.]+) s", text)[-1])
        time.sleep(0.2)
    raise TimeoutError(f"the adapt worker did not come back in {timeout} s:\n{served.logs()}")


def probe_ms(client: httpx.Client, path: str, n: int) -> float:
    """Median client-side time of a GET: the HTTP floor under the adaptation."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        client.get(path).raise_for_status()
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 2)


def stats(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    return {"median": round(statistics.median(s), 2), "p90": round(s[min(len(s) - 1, int(0.9 * len(s)))], 2),
            "min": round(s[0], 2), "n": len(s)}


def in_process_learner(data_dir: Path, model_id: str) -> Any:
    """The model's learner with theta from the artifact store, exactly as the adapt worker builds it."""
    from workers.pipelines import model_learner

    settings = Settings(data_dir=data_dir)
    with session_scope(settings.sqlalchemy_url) as session:
        model = session.get(Model, model_id)
        assert model is not None
    return model_learner(model, settings), model


def run(args: argparse.Namespace) -> dict[str, Any]:
    setup(1)
    data_dir = Path(tempfile.mkdtemp(prefix="fewshot-http-bench-"))
    try:
        return measure(args, data_dir)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def measure(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    env = {"FEWSHOT_OMNIGLOT_DIR": str(DATASETS / "omniglot"), "OMP_NUM_THREADS": "1"}
    config = {"steps": args.train_steps, "meta_batch_size": 2, "eval_episodes": 2, "checkpoint_every": 0,
              "channels": args.channels, "adapt_steps": 5, "k_query": 1}
    sets = supports(args.tasks + 1, seed=1)
    # The omniglot cache this process just read, in the served data directory: the train worker
    # skips decoding the archives (a data directory that has served before has it too).
    (data_dir / "cache").mkdir(parents=True, exist_ok=True)
    for cached in BENCH_CACHE.glob("omniglot-*.npz"):
        shutil.copy(cached, data_dir / "cache" / cached.name)
    with Served(data_dir, env) as served:
        t0 = time.perf_counter()
        model_id = train_model(served, config)
        print(f"model {model_id} trained in {time.perf_counter() - t0:.1f} s", flush=True)
        learner, model = in_process_learner(data_dir, model_id)
        from models.episodes import ProblemSpec

        spec = ProblemSpec.from_json(model.spec)
        http_ms, inproc_ms, api, ids = [], [], [], []
        client = httpx.Client(base_url=f"http://127.0.0.1:{served.port}", timeout=120)
        with client:
            for i, support in enumerate(sets):
                t = time.perf_counter()
                r = client.post(f"/v1/models/{model_id}/tasks", json={"support": support})
                elapsed = (time.perf_counter() - t) * 1000
                if r.status_code != 201:
                    raise RuntimeError(f"task {i}: {r.status_code} {r.text}\n{served.logs()}")
                ids.append(r.json()["id"])
                http_ms.append(elapsed)
                api.append(server_timing(r.headers.get("server-timing", "")))
                x = parse_inputs(support["inputs"], spec, "support.inputs")
                y = parse_labels(support["labels"], len(x), spec).targets
                t = time.perf_counter()
                learner.adapt(x, y, AdaptOptions())
                inproc_ms.append((time.perf_counter() - t) * 1000)
            probes = {"GET /healthz": probe_ms(client, "/healthz", 50),
                      "GET /v1/tasks/{id}": probe_ms(client, f"/v1/tasks/{ids[-1]}", 50)}
            fresh: dict[str, Any] = {}
            if args.fresh_worker:  # a new adapt worker, warmed up, meets a model it has not loaded
                warm_s = restart_adapt_worker(served)
                time.sleep(1.0)
                t = time.perf_counter()
                r = client.post(f"/v1/models/{model_id}/tasks", json={"support": sets[0]})
                fresh = {"http_ms": round((time.perf_counter() - t) * 1000, 1), "process_warm_up_s": warm_s,
                         "api": server_timing(r.headers.get("server-timing", "")), "id": r.json().get("id")}
        time.sleep(0.5)  # the worker's log line is flushed
        worker = worker_timings(data_dir / "logs" / "worker-adapt.log")
    cold = {"http_ms": round(http_ms[0], 1), "in_process_first_ms": round(inproc_ms[0], 1),
            "api": api[0], "worker": worker.get(ids[0], {})}
    if fresh:
        fresh["worker"] = worker.get(fresh.pop("id"), {})
    warm_http, warm_inproc = http_ms[1:], inproc_ms[1:]
    breakdown: dict[str, list[float]] = {}
    for i in range(1, len(ids)):
        for k, v in api[i].items():
            breakdown.setdefault(f"api {k}", []).append(v)
        for k, v in worker.get(ids[i], {}).items():
            breakdown.setdefault(f"worker {k}", []).append(v)
        if "wait" in api[i] and ids[i] in worker:
            breakdown.setdefault("queue + pickup + result (wait - worker total)", []).append(api[i]["wait"] - worker[ids[i]]["total"])
        if "total" in api[i]:
            breakdown.setdefault("HTTP + deps (client - api total)", []).append(http_ms[i] - api[i]["total"])
    diffs = [h - p for h, p in zip(warm_http, warm_inproc, strict=True)]
    return {
        "settings": {**vars(args), "train_config": config},
        "http_ms": stats(warm_http), "in_process_ms": stats(warm_inproc), "difference_ms": stats(diffs),
        "cold": cold, "fresh_worker": fresh, "probes_ms": probes,
        "breakdown_median_ms": {k: round(statistics.median(v), 2) for k, v in breakdown.items()},
        "raw": {"http_ms": [round(v, 2) for v in http_ms], "in_process_ms": [round(v, 2) for v in inproc_ms]},
    }


def dirty_kb() -> int | None:
    """The machine's dirty page cache (/proc/meminfo `Dirty:`, kB), None where there is none to read.
    On session 15's VM, with the cache at the kernel's background writeback threshold, writing a
    450 KB state file (the worker's save stage) took 6 ms against 0.55 (benchmarks/RESULTS.md);
    `sync` before a run empties it."""
    try:
        with open("/proc/meminfo") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("Dirty:")), None)
    except OSError:
        return None


def markdown(res: dict[str, Any]) -> str:
    s = res["settings"]
    dirty = res.get("dirty_kb") or [None, None]
    lines = [
        f"MAML Conv4-{s['channels']}, Omniglot 5-way 1-shot, 5 adaptation steps; {s['tasks']} warm tasks, one at a time, "
        "POST /v1/models/{id}/tasks (wait) with 5 base64 PNGs over one keep-alive connection to `fewshot serve` "
        "(embedded Redis, SQLite, adapt worker with 1 torch thread); in-process: `learner.adapt` on the same support, "
        f"learner loaded as the worker loads it, interleaved with the requests. Load average (1 min) before and after: "
        f"{res['load_average_1min'][0]} and {res['load_average_1min'][1]} on {os.cpu_count()} cores; dirty page cache "
        f"before and after: {dirty[0]} and {dirty[1]} kB.",
        "",
        "| warm, ms | median | p90 | min |",
        "|---|---|---|---|",
    ]
    for name, key in (("HTTP through the adapt queue", "http_ms"), ("in-process `adapt`", "in_process_ms"),
                      ("difference (per task)", "difference_ms")):
        r = res[key]
        lines.append(f"| {name} | {r['median']:.1f} | {r['p90']:.1f} | {r['min']:.1f} |")
    c, f = res["cold"], res["fresh_worker"]
    lines += ["", f"Cold, the first task of a model just trained (the train worker asked the adapt worker to warm it): "
              f"**{c['http_ms']:.0f} ms** over HTTP; worker stages (ms) {c['worker']}."]
    if f:
        lines += ["", f"Cold, the first task in a fresh adapt worker (restarted; its process warm-up took "
                  f"{f['process_warm_up_s']:.1f} s before it) that has not loaded the model: **{f['http_ms']:.0f} ms** "
                  f"over HTTP; worker stages (ms) {f['worker']}."]
    lines += ["", "HTTP floor on the same connection (median ms): "
              + ", ".join(f"{k} {v:.2f}" for k, v in res["probes_ms"].items()) + ".",
              "", "Where the warm HTTP time goes (medians, ms; `api` from Server-Timing, `worker` from its log line):", "",
              "| stage | ms |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in res["breakdown_median_ms"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=40, help="warm tasks after the cold one")
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--train-steps", type=int, default=3)
    p.add_argument("--tag", default="")
    p.add_argument("--fresh-worker", type=int, default=1,
                   help="1: restart the adapt worker, wait for its warm-up, time its first task; 0: skip")
    p.add_argument("--smoke", action="store_true", help="8 channels, 3 tasks: checks the script runs")
    args = p.parse_args()
    if args.smoke:
        args.tasks, args.channels, args.train_steps, args.tag = 3, 8, 1, args.tag or "-smoke"
        args.fresh_worker = 0
    os.chdir(ROOT)
    load_before, dirty_before = os.getloadavg()[0], dirty_kb()
    res = run(args)
    res["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]  # other work on the machine
    res["dirty_kb"] = [dirty_before, dirty_kb()]
    for key in ("http_ms", "in_process_ms", "difference_ms", "cold", "fresh_worker", "probes_ms", "breakdown_median_ms"):
        print(key, res[key], flush=True)
    write_results(f"http_adaptation{args.tag}", res, markdown(res))


if __name__ == "__main__":
    main()
