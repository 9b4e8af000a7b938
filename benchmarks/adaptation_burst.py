"""Bursts of adaptations of one model: the adapt worker's batches against one task a message.

Starts a real `fewshot serve` (API processes sized to the cores, train and adapt workers,
embedded Redis, SQLite, a temp data directory) once per mode (MODES, or `--modes`): the defaults
(two adapt processes; each adapts a model's waiting tasks in one batch,
workers/pipelines.adapt_tasks), one adapt process, one chunk, and one task a message on one
process (as before batching). Each meta-trains a small MAML Conv4 on
Omniglot 5-way 1-shot for a few steps (speed, not accuracy) with 5 adaptation steps, then:

- a sequence: `--tasks` adaptations one after another over one keep-alive connection;
- bursts of 1, 10 and `--tasks` adaptations sent at once (one connection each), timed from the
  first send to the last answer. Every POST waits for its task (201); a 202 is polled until ready.

Where the CPU goes: for the sequence and the largest burst, each process's CPU time (user and
system, from /proc) over the run, per task, by role (API processes, adapt worker pool processes,
the adapt worker's main process, Redis, this process as the client). Two cores give a burst at
most two CPU-seconds a second, so its CPU per task bounds how fast it can finish.

The tenant's bound on adaptations in flight is off (`FEWSHOT_MAX_INFLIGHT_ADAPTATIONS_PER_TENANT=0`)
so that a burst of 100 from one key is all admitted. Also, in this process: the same
adaptations through MAML.adapt_many as a loop and as one vmap over tasks (the path CUDA takes).

    python benchmarks/adaptation_burst.py --smoke
    python benchmarks/adaptation_burst.py                 # Conv4-64, bursts of 1, 10, 100, 3 repeats
    python benchmarks/adaptation_burst.py --device cuda:0 --repeats 1 --name gpu-adaptation_burst   # gpu.sh
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import torch
from http_adaptation import BENCH_CACHE, Served, supports, train_model
from reporting import DATASETS, RESULTS, ROOT, cpu_seconds, setup, synchronize, write_results

from models.episodes import ProblemSpec
from models.learners import AdaptRequest, build_learner
from models.learners.maml import MAMLConfig
from service.inputs import parse_inputs, parse_labels

# The adapt worker's settings per served mode: the defaults (two processes, batches of up to 64,
# chunks of 8), one process, one chunk of 64 (every task of a batch recorded at its end), and one
# task a message on one process (the behaviour before batching).
MODES: dict[str, dict[str, str]] = {
    "batched": {},
    "batched, 1 process": {"FEWSHOT_ADAPT_PROCESSES": "1"},
    "batched, one chunk": {"FEWSHOT_ADAPT_CHUNK": "64"},
    "one task a message, 1 process": {"FEWSHOT_ADAPT_BATCH_MAX": "1", "FEWSHOT_ADAPT_PROCESSES": "1"},
}


def _cpu_by_process(root: int) -> dict[int, tuple[str, float]]:
    """`root` and every process under it: pid -> (role, CPU seconds so far, user + system)."""
    out: dict[int, tuple[str, float]] = {}
    pending = [(root, 0)]  # (pid, its parent)
    while pending:
        pid, parent = pending.pop()
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            children = [int(c) for f in Path(f"/proc/{pid}/task").glob("*/children") for c in f.read_text().split()]
        except OSError:  # gone meanwhile
            continue
        pending += [(child, pid) for child in children]
        if "spawn_main" in cmd or "uvicorn" in cmd:
            role = "API"
        elif "-Q adapt" in cmd:
            role = "adapt worker, main process" if parent == root else "adapt worker, pool processes"
        elif "-Q train" in cmd:
            role = "train worker"
        elif "valkey" in cmd or "redis" in cmd:
            role = "Redis"
        else:
            role = "fewshot serve (supervisor)" if pid == root else "other"
        out[pid] = (role, cpu_seconds([pid]))
    return out


class CpuMeter:
    """CPU milliseconds per task, by role, spent by `fewshot serve`'s processes and this client
    between start() and stop(n)."""

    def __init__(self, root: int) -> None:
        self.root = root

    def start(self) -> None:
        self.before, self.client = _cpu_by_process(self.root), os.times()

    def stop(self, tasks: int) -> dict[str, float]:
        after, client = _cpu_by_process(self.root), os.times()
        by_role: dict[str, float] = {}
        for pid, (role, seconds) in after.items():
            by_role[role] = by_role.get(role, 0.0) + seconds - self.before.get(pid, (role, 0.0))[1]
        by_role["client (this process)"] = client.user + client.system - self.client.user - self.client.system
        out = {role: round(seconds * 1000 / tasks, 2) for role, seconds in sorted(by_role.items()) if seconds > 0}
        out["total"] = round(sum(by_role.values()) * 1000 / tasks, 2)
        return out


async def _adapt(client: httpx.AsyncClient, model_id: str, support: dict[str, Any]) -> tuple[int, float]:
    """The answer's status and the seconds until the task was ready."""
    t = time.perf_counter()
    r = await client.post(f"/v1/models/{model_id}/tasks", json={"support": support})
    if r.status_code == 202:  # still adapting when the API stopped waiting: poll
        task_id = r.json()["id"]
        while (await client.get(f"/v1/tasks/{task_id}")).json()["status"] == "adapting":
            await asyncio.sleep(0.05)
        return 202, time.perf_counter() - t
    if r.status_code != 201:
        raise RuntimeError(f"{r.status_code} {r.text}")
    return 201, time.perf_counter() - t


async def _burst(port: int, model_id: str, sets: list[dict[str, Any]]) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=len(sets), max_keepalive_connections=len(sets))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=300, limits=limits) as client:
        await client.get("/healthz")
        t = time.perf_counter()
        answers = await asyncio.gather(*[_adapt(client, model_id, s) for s in sets])
        elapsed = time.perf_counter() - t
    codes = [c for c, _ in answers]
    latencies = sorted(s for _, s in answers)
    return {"seconds": round(elapsed, 3), "codes": {c: codes.count(c) for c in set(codes)},
            "p50_s": round(statistics.median(latencies), 3), "first_s": round(latencies[0], 3)}


def sequence(served: Served, model_id: str, sets: list[dict[str, Any]]) -> float:
    with httpx.Client(base_url=f"http://127.0.0.1:{served.port}", timeout=300) as client:
        client.get("/healthz")
        t = time.perf_counter()
        for s in sets:
            r = client.post(f"/v1/models/{model_id}/tasks", json={"support": s})
            if r.status_code != 201:
                raise RuntimeError(f"{r.status_code} {r.text}\n{served.logs()}")
        return time.perf_counter() - t


def measure_server(args: argparse.Namespace, mode: str, worker_env: dict[str, str], sets: list[dict[str, Any]]) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="fewshot-burst-bench-"))
    env = {"FEWSHOT_OMNIGLOT_DIR": str(DATASETS / "omniglot"), "OMP_NUM_THREADS": "1",
           "FEWSHOT_MAX_INFLIGHT_ADAPTATIONS_PER_TENANT": "0"}
    env.update(worker_env)
    if args.device != "cpu":
        env["FEWSHOT_DEVICE"] = args.device  # the workers; the API predicts on the CPU
    config = {"steps": 3, "meta_batch_size": 2, "eval_episodes": 2, "checkpoint_every": 0, "channels": args.channels,
              "adapt_steps": 5, "k_query": 1}
    (data_dir / "cache").mkdir(parents=True, exist_ok=True)
    for cached in BENCH_CACHE.glob("omniglot-*.npz"):
        shutil.copy(cached, data_dir / "cache" / cached.name)
    try:
        with Served(data_dir, env) as served:
            model_id = train_model(served, config)
            sequence(served, model_id, sets[:3])  # the adapt worker loads the model
            out: dict[str, Any] = {"sequence_s": [], "bursts": {}, "cpu": {"sequence": [], "burst": []}}
            assert served.process is not None
            meter = CpuMeter(served.process.pid)
            for _ in range(args.repeats):
                meter.start()
                out["sequence_s"].append(round(sequence(served, model_id, sets), 3))
                out["cpu"]["sequence"].append(meter.stop(len(sets)))
                for size in args.bursts:
                    meter.start()
                    out["bursts"].setdefault(str(size), []).append(asyncio.run(_burst(served.port, model_id, sets[:size])))
                    if size == max(args.bursts):
                        out["cpu"]["burst"].append(meter.stop(size))
                print(mode, "sequence", out["sequence_s"][-1], "bursts",
                      {k: (v[-1]["seconds"], v[-1]["p50_s"]) for k, v in out["bursts"].items()}, flush=True)
            return out
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def in_process(args: argparse.Namespace, sets: list[dict[str, Any]]) -> dict[str, float]:
    """ms per task of MAML.adapt_many over the same support sets: the loop and the vmap."""
    spec = ProblemSpec((1, 28, 28), "classification", n_way=5)
    torch.manual_seed(0)
    device = torch.device(args.device)
    learner = build_learner("maml", spec, MAMLConfig(channels=args.channels, inner_lr=0.4, inner_steps=5)).to(device)
    requests = []
    for s in sets:
        x = parse_inputs(s["inputs"], spec, "support.inputs")
        requests.append(AdaptRequest(x.to(device), parse_labels(s["labels"], len(x), spec).targets.to(device)))
    out: dict[str, list[float]] = {"loop": [], "vmap": []}
    for _ in range(args.repeats):
        for mode in out:
            t = time.perf_counter()
            learner.adapt_many(requests, vectorize=mode == "vmap")  # type: ignore[call-arg]
            synchronize(device)
            out[mode].append((time.perf_counter() - t) * 1000 / len(requests))
    return {k: round(statistics.median(v), 2) for k, v in out.items()}


def markdown(res: dict[str, Any]) -> str:
    n = res["tasks"]
    lines = [
        f"MAML Conv4-{res['channels']}, Omniglot 5-way 1-shot, 5 adaptation steps; `fewshot serve` defaults (adapt worker: "
        f"1 torch thread a process, device {res['device']}) but for each mode's settings, tenant bound off; medians of {res['repeats']} repeats. Tasks per second "
        f"(seconds for the whole burst; for bursts also the median task's seconds until ready). Load average (1 min) before "
        f"and after: {res['load_average_1min']}.",
        "",
        "| adapt worker | " + " | ".join(["sequence of " + str(n)] + [f"burst of {b}" for b in res["bursts"]]) + " |",
        "|---|" + "---|" * (len(res["bursts"]) + 1),
    ]
    for mode, r in res["modes"].items():
        cells = [f"{n / r['sequence_median_s']:.1f}/s ({r['sequence_median_s']:.2f} s)"]
        for b in res["bursts"]:
            s = r["burst_median_s"][str(b)]
            cells.append(f"{b / s:.1f}/s ({s:.2f} s; median task {r['burst_p50_s'][str(b)]:.2f} s)")
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    big = str(max(res["bursts"]))
    lines += ["", f"Burst of {big} against {n} in sequence (the same mode's sequence; target >= 3x faster):", ""]
    baseline = "one task a message, 1 process"
    for mode, r in res["modes"].items():
        line = f"- {mode}: {r['sequence_median_s'] / r['burst_median_s'][big]:.2f}x"
        if baseline in res["modes"] and mode != baseline:
            single = res["modes"][baseline]["burst_median_s"][big]
            line += f"; against {baseline}, same burst: {single / r['burst_median_s'][big]:.2f}x"
        lines.append(line)
    lines += ["", f"CPU per task, ms (user + system, medians of the repeats), in {n} in sequence and in the burst of {big}, "
              f"and what two cores allow: a burst cannot end before its CPU time over 2:", ""]
    for mode, r in res["modes"].items():
        seq, burst = r["cpu_ms_median"]["sequence"], r["cpu_ms_median"]["burst"]
        lines += [f"**{mode}**", "", "| process | sequence | burst |", "|---|---|---|"]
        lines += [f"| {role} | {seq.get(role, 0.0):.2f} | {burst.get(role, 0.0):.2f} |"
                  for role in sorted(set(seq) | set(burst)) if role != "total"]
        lines.append(f"| total | {seq.get('total', 0.0):.2f} | {burst.get('total', 0.0):.2f} |")
        floor_s = burst.get("total", 0.0) * int(big) / 1000 / 2
        needed = r["sequence_median_s"] / 3 * 2 * 1000 / int(big)
        lines += ["", f"Burst of {big}: {r['burst_median_s'][big]:.2f} s against {floor_s:.2f} s of its CPU over 2 cores; "
                      f"3x the sequence ({r['sequence_median_s'] / 3:.2f} s) would need at most {needed:.1f} ms of CPU a task "
                      f"on 2 cores, in-process adaptation alone {res['in_process_ms_per_task']['loop']} ms.", ""]
    lines += [
        "",
        f"In process, MAML.adapt_many over {n} of the same support sets, ms per task: loop "
        f"{res['in_process_ms_per_task']['loop']}, vmap over tasks {res['in_process_ms_per_task']['vmap']}.",
        "",
        f"![adaptation throughput against burst size]({res['name']}.png)" if res.get("plotted") else "",
    ]
    return "\n".join(lines) + "\n"


def plot(res: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib
    except ImportError:
        print(f"matplotlib not installed (pip install -e '.[bench]'): {path.name} not drawn")
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    sizes = res["bursts"]
    for mode, r in res["modes"].items():
        ax.plot(sizes, [b / r["burst_median_s"][str(b)] for b in sizes], marker="o", label=f"burst, {mode}")
        ax.axhline(res["tasks"] / r["sequence_median_s"], linestyle="--", alpha=0.5, label=f"sequence, {mode}")
    ax.set_xscale("log")
    ax.set_xlabel("adaptations sent at once")
    ax.set_ylabel("adaptations per second")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"Adaptation throughput, MAML Conv4-{res['channels']}, 2 cores")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=100, help="the sequence's length and the largest burst")
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu", help="where the workers and the in-process comparison run (cuda[:N]: gpu.sh)")
    p.add_argument("--name", default="adaptation_burst", help="results file name")
    p.add_argument("--modes", default=";".join(MODES), help="adapt worker modes separated by ';', of: " + "; ".join(MODES))
    p.add_argument("--smoke", action="store_true", help="8 channels, 4 tasks, one repeat")
    args = p.parse_args()
    name = args.name
    if args.smoke:
        args.tasks, args.channels, args.repeats, name = 4, 8, 1, f"{name}-smoke"
    args.bursts = sorted({1, min(10, args.tasks), args.tasks})
    os.chdir(ROOT)
    setup(1)
    load_before = os.getloadavg()[0]
    sets = supports(args.tasks, seed=2)
    res: dict[str, Any] = {"name": name, "device": args.device, "tasks": args.tasks, "channels": args.channels, "repeats": args.repeats,
                           "bursts": args.bursts, "modes": {}}
    modes = [m.strip() for m in args.modes.split(";")]
    if unknown := set(modes) - set(MODES):
        p.error(f"unknown modes {sorted(unknown)}; choose from {list(MODES)}")
    for mode in modes:
        worker_env = MODES[mode]
        r = measure_server(args, mode, worker_env, sets)
        r["sequence_median_s"] = statistics.median(r["sequence_s"])
        r["burst_median_s"] = {k: statistics.median(x["seconds"] for x in v) for k, v in r["bursts"].items()}
        r["burst_p50_s"] = {k: statistics.median(x["p50_s"] for x in v) for k, v in r["bursts"].items()}
        r["cpu_ms_median"] = {phase: {role: round(statistics.median(run.get(role, 0.0) for run in runs), 2)
                                      for role in {role for run in runs for role in run}}
                              for phase, runs in r["cpu"].items()}
        res["modes"][mode] = r
    res["in_process_ms_per_task"] = in_process(args, sets)
    res["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    res["plotted"] = plot(res, RESULTS / f"{name}.png")
    write_results(name, res, markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
