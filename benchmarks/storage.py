"""Bytes stored per adapted task for each learner, and how long one task state takes to load.

For every learner on 5-way 1-shot Omniglot-sized inputs (Conv4, 1x28x28; MAML also on the
sinusoid MLP, multi-task on its synthetic family): build the learner as a training job
would (untrained: the size of phi does not depend on training), adapt one test episode,
save phi with the real artifact store (`store.artifacts.ArtifactStore.save`, safetensors,
atomic rename) under as many distinct task keys as `--loads`, then load each once with
`ArtifactStore.load`, as the API does on a task-cache miss. Two figures per learner: the
file just written (in the page cache) and the file evicted from the page cache first
(`posix_fadvise(DONTNEED)` after an fsync: a read from the disk, as for a task not touched
in a while). Theta (the model, stored once) is given for scale.

    python benchmarks/storage.py --smoke    # seconds: 8 channels, 5 loads
    python benchmarks/storage.py            # Conv4-64, 200 loads per learner
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from reporting import DATASETS, setup, write_results

from models.learners import LEARNERS, build_learner
from models.recipe import DataSources, build_tasks, resolve
from store.artifacts import ArtifactStore, state_key, theta_key

# (row name, algorithm, dataset, config beyond the defaults); Conv4 width comes from --channels.
CASES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("maml", "maml", "omniglot", {"adapt_steps": 5}),
    ("fomaml", "fomaml", "omniglot", {"adapt_steps": 5}),
    ("metasgd", "metasgd", "omniglot", {}),
    ("anil", "anil", "omniglot", {}),
    ("protonet", "protonet", "omniglot", {}),
    ("finetune", "finetune", "omniglot", {"inner_steps": 5}),
    ("blackbox mann", "blackbox", "omniglot", {"architecture": "mann"}),
    ("blackbox attention", "blackbox", "omniglot", {"architecture": "attention"}),
    ("maml sinusoid MLP", "maml", "sinusoid", {}),
    ("multitask (mtl-synthetic)", "multitask", "mtl-synthetic", {}),
]
CONV = {"maml", "fomaml", "metasgd", "anil", "protonet", "finetune", "blackbox"}


def evict(path: Path) -> None:
    """Drop the file's pages from the page cache (this file only), so the next read goes to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def median_ms(times: list[float]) -> float:
    return round(statistics.median(times) * 1000, 3)


def measure(name: str, algorithm: str, dataset: str, config: dict[str, Any], args: argparse.Namespace,
            root: Path) -> dict[str, Any]:
    if algorithm in CONV and dataset == "omniglot":
        config = {"channels": args.channels, **config}
    recipe = resolve(algorithm, dataset, config)
    cache = Path(tempfile.gettempdir()) / "fewshot-bench-cache"
    tasks = build_tasks(recipe, DataSources(DATASETS / "omniglot", cache, DATASETS / "mnist"))
    torch.manual_seed(0)
    learner = build_learner(algorithm, tasks.spec, LEARNERS[algorithm].config_for(recipe.learner, tasks))
    episode = tasks.sample("test", 1, torch.Generator().manual_seed(0))[0]
    phi = learner.adapt(episode.support_x, episode.support_y)
    store = ArtifactStore(root / name.replace(" ", "-"))
    theta_bytes = store.save(theta_key("mdl_bench"), learner.state())
    keys = [state_key(f"tsk_bench{i:05d}") for i in range(args.loads)]
    phi_bytes = [store.save(key, phi) for key in keys]
    assert len(set(phi_bytes)) == 1
    warm = []
    for key in keys:
        t = time.perf_counter()
        loaded = store.load(key)
        warm.append(time.perf_counter() - t)
    assert loaded.keys() == phi.keys()
    for key in keys:
        evict(store.path(key))
    cold = []
    for key in keys:
        t = time.perf_counter()
        store.load(key)
        cold.append(time.perf_counter() - t)
    return {
        "algorithm": algorithm, "dataset": dataset, "config": config,
        "phi_bytes": phi_bytes[0], "phi_tensors": len(phi), "phi_numel": sum(v.numel() for v in phi.values()),
        "theta_bytes": theta_bytes,
        "load_page_cache_ms": median_ms(warm), "load_evicted_ms": median_ms(cold),
        "load_evicted_p90_ms": round(sorted(cold)[int(0.9 * (len(cold) - 1))] * 1000, 3),
    }


def markdown(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"One adapted task's state (phi) as stored by `ArtifactStore.save` (safetensors, local folder), Conv4-{args.channels} "
        f"on 5-way 1-shot 28x28 Omniglot unless named; load = `ArtifactStore.load` of a distinct task file, median of "
        f"{args.loads}, just written (page cache) and evicted from the page cache (`posix_fadvise` DONTNEED).",
        "",
        "| learner | phi bytes | tensors | theta bytes | load, page cache ms | load, evicted ms (p90) |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['phi_bytes']:,} | {r['phi_tensors']} | {r['theta_bytes']:,} | "
                     f"{r['load_page_cache_ms']:.3f} | {r['load_evicted_ms']:.3f} ({r['load_evicted_p90_ms']:.3f}) |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--loads", type=int, default=200, help="distinct task files loaded per learner")
    p.add_argument("--dir", type=Path, default=None, help="where the artifact store lives (default: a temp folder)")
    p.add_argument("--smoke", action="store_true", help="8 channels, 5 loads: checks the script runs")
    args = p.parse_args()
    tag = ""
    if args.smoke:
        args.channels, args.loads, tag = 8, 5, "-smoke"
    setup(1)
    results = {}
    with tempfile.TemporaryDirectory(prefix="fewshot-storage-", dir=args.dir) as root:
        for name, algorithm, dataset, config in CASES:
            results[name] = measure(name, algorithm, dataset, config, args, Path(root))
            print(name, results[name], flush=True)
    write_results(f"storage{tag}", {"settings": {k: str(v) for k, v in vars(args).items()}, "results": results},
                  markdown(results, args))


if __name__ == "__main__":
    main()
