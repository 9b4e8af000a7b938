"""Black-box learners (mann, attention) beside MAML and ProtoNet on Omniglot, held-out alphabets.

Every learner meta-trains on the same alphabets with the same budget (outer steps, tasks per
step, Conv4 width) and is scored on the same meta-test tasks drawn from alphabets it never
saw (`split_by: alphabet` over ../shared/datasets/omniglot: 8 alphabets, 242 characters).
Also measured: the cost of adapting one task (wall time of `adapt`, and the bytes of its
stored state phi as safetensors), black-box against MAML.

    .venv/bin/python benchmarks/blackbox_omniglot.py                  # minutes on 2 CPU cores
    .venv/bin/python benchmarks/blackbox_omniglot.py --smoke          # seconds: checks the script runs
    .venv/bin/python benchmarks/blackbox_omniglot.py --long           # 10x the steps, 64 channels
    .venv/bin/python benchmarks/blackbox_omniglot.py --settings 5x1 --save-models /tmp/bb-models
    .venv/bin/python benchmarks/blackbox_omniglot.py --settings 5x1,20x1 --serve-ways 5,20  # each model at both ways

Writes benchmarks/results/blackbox_omniglot[-smoke].json (every run, the command, wall time)
and .md (the table). With --save-models DIR each learner's theta is saved there, for
benchmarks/ood.py --models DIR to reuse.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from reporting import RESULTS  # noqa: E402  (FEWSHOT_BENCH_RESULTS redirects it)
from safetensors.torch import save  # noqa: E402

from models.learners import LEARNERS, Learner, build_learner  # noqa: E402
from models.omniglot import OmniglotImages, OmniglotTasks, load_omniglot, split_characters  # noqa: E402
from models.recipe import resolve  # noqa: E402
from models.training import evaluate, meta_train  # noqa: E402

log = logging.getLogger("benchmarks.blackbox_omniglot")
ROOT = Path(__file__).resolve().parents[1]
OMNIGLOT = ROOT.parent / "shared" / "datasets" / "omniglot"
CACHE = ROOT / ".fewshot" / "cache"  # the service's default data directory (git-ignored)

# Per-learner settings beyond the shared budget; everything else is the learner's default.
LEARNER_CONFIGS: dict[str, dict[str, Any]] = {
    "maml": {"inner_steps": 1, "inner_lr": 0.4, "meta_lr": 1e-3},  # second order, the paper's Omniglot step
    "protonet": {},
    "mann": {"architecture": "mann", "meta_lr": 3e-3},
    "attention": {"architecture": "attention", "width": 64, "meta_lr": 1e-3},
    # the readout before "summaries", a slot per label: at most n_way classes (served_at stays empty above it)
    "attention_slots": {"architecture": "attention", "attention_readout": "label_slots", "width": 64, "meta_lr": 1e-3},
}


def algorithm_of(name: str) -> str:
    return "blackbox" if "architecture" in LEARNER_CONFIGS.get(name, {}) else name


def build(name: str, tasks: OmniglotTasks, channels: int, seed: int) -> Learner:
    recipe = resolve(algorithm_of(name), "omniglot", {**LEARNER_CONFIGS[name], "channels": channels})
    torch.manual_seed(seed)
    return build_learner(algorithm_of(name), tasks.spec, recipe.learner)


def meta_batch(five_way_batch: int, n_way: int) -> int:
    """Tasks per outer step: fewer for wider tasks, so every setting costs about the same."""
    return max(1, five_way_batch * 5 // n_way)


def adaptation_cost(learner: Learner, tasks: OmniglotTasks, n_tasks: int, seed: int) -> dict[str, float]:
    """Mean wall time of adapt() per task, and the bytes of phi written as safetensors."""
    episodes = tasks.sample("test", n_tasks, torch.Generator().manual_seed(seed + 7))
    learner.adapt(episodes[0].support_x, episodes[0].support_y)  # warm-up
    start = time.perf_counter()
    states = [learner.adapt(ep.support_x, ep.support_y) for ep in episodes]
    seconds = (time.perf_counter() - start) / n_tasks
    return {"adapt_ms": round(1000 * seconds, 2), "phi_bytes": len(save(states[0]))}


def run_one(name: str, data: OmniglotImages, splits: dict, n_way: int, k_shot: int, args: argparse.Namespace) -> dict[str, Any]:
    tasks = OmniglotTasks(data, splits, n_way, k_shot, args.k_query)
    learner = build(name, tasks, args.channels, args.seed)
    losses: list[float] = []
    start = time.perf_counter()
    batch = meta_batch(args.meta_batch, n_way)
    meta_train(learner, tasks, args.steps, batch, args.seed, on_step=lambda s, t, m: losses.append(m["loss"]))
    train_s = time.perf_counter() - start
    result = evaluate(learner, tasks, args.eval_episodes, args.seed)
    served = {}  # the same model on held-out tasks of other ways, where it takes them
    for ways in [int(w) for w in args.serve_ways.split(",") if w]:
        if ways != n_way and ways <= learner.max_classes:
            other = evaluate(learner, OmniglotTasks(data, splits, ways, k_shot, args.k_query), args.eval_episodes, args.seed)
            served[f"{ways}-way"] = {"accuracy": round(other.mean, 4), "ci95": round(other.ci95, 4)}
    tail = max(len(losses) // 10, 1)
    run = {
        "learner": name, "n_way": n_way, "k_shot": k_shot, "meta_batch": batch, "accuracy": round(result.mean, 4),
        "ci95": round(result.ci95, 4), "episodes": result.episodes, "train_s": round(train_s, 1),
        "loss_first": round(sum(losses[:tail]) / tail, 4), "loss_last": round(sum(losses[-tail:]) / tail, 4),
        "served_at": served,
        **adaptation_cost(learner, tasks, args.cost_tasks, args.seed),
    }
    if args.save_models:
        path = Path(args.save_models) / f"{name}-{n_way}way-{k_shot}shot.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(save(learner.state()))
    return run


def table(runs: list[dict[str, Any]]) -> str:
    lines = ["| learner | N-way K-shot | accuracy (95% CI) | served at other ways | train s | loss first -> last "
             "| adapt ms/task | phi bytes |",
             "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        served = ", ".join(f"{w}: {100 * v['accuracy']:.1f} ± {100 * v['ci95']:.1f}" for w, v in r.get("served_at", {}).items())
        lines.append(
            f"| {r['learner']} | {r['n_way']}-way {r['k_shot']}-shot | {100 * r['accuracy']:.1f} ± {100 * r['ci95']:.1f} "
            f"| {served or '-'} | {r['train_s']} | {r['loss_first']} -> {r['loss_last']} | {r['adapt_ms']} | {r['phi_bytes']} |"
        )
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="a few steps of everything: checks the script runs")
    p.add_argument("--long", action="store_true", help="10x the steps, 64 channels, 600 test tasks")
    p.add_argument("--settings", default="5x1,5x5,20x1,20x5", help="comma-separated N x K")
    p.add_argument("--learners", default="maml,protonet,mann,attention")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--meta-batch", type=int, default=8, help="tasks per step at 5-way; 20-way takes a quarter")
    p.add_argument("--k-query", type=int, default=3)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--eval-episodes", type=int, default=200)
    p.add_argument("--cost-tasks", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--serve-ways", default="", help="comma-separated ways to evaluate each model at besides its own "
                   "(learners that take any number of classes: protonet, attention)")
    p.add_argument("--save-models", default=None, help="folder for each learner's theta (for ood.py)")
    p.add_argument("--tag", default="", help="suffix of the result files")
    args = p.parse_args()
    if args.smoke:
        args.steps, args.eval_episodes, args.cost_tasks, args.channels, args.tag = 2, 4, 2, 8, args.tag or "-smoke"
    if args.long:
        args.steps, args.channels, args.eval_episodes = 10 * args.steps, 64, 600
    return args


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    args = parse_args()
    wall = time.perf_counter()
    data = load_omniglot(OMNIGLOT, CACHE)
    splits = split_characters(data, by="alphabet", seed=args.seed)
    names = [n for n in args.learners.split(",") if algorithm_of(n) in LEARNERS]
    missing = [n for n in args.learners.split(",") if algorithm_of(n) not in LEARNERS]
    runs: list[dict[str, Any]] = []
    md = ""
    for setting in args.settings.split(","):
        n_way, k_shot = (int(v) for v in setting.split("x"))
        for name in names:
            run = run_one(name, data, splits, n_way, k_shot, args)
            log.info("%s", run)
            runs.append(run)
            md = write_results(runs, args, data, splits, names, missing, time.perf_counter() - wall)  # after every run
    print(md)


def write_results(
    runs: list[dict[str, Any]], args: argparse.Namespace, data: OmniglotImages, splits: dict,
    names: list[str], missing: list[str], seconds: float,
) -> str:
    held_out = sorted({data.alphabets[i] for i in splits["test"]})
    command = " ".join(["python", "benchmarks/blackbox_omniglot.py", *sys.argv[1:]])
    out = {
        "command": command, "wall_s": round(seconds, 1), "held_out_alphabets": held_out,
        "train_alphabets": sorted({data.alphabets[i] for i in splits["train"]}),
        "budget": {k: getattr(args, k) for k in ("steps", "meta_batch", "k_query", "channels", "eval_episodes", "seed")},
        "learner_configs": {n: LEARNER_CONFIGS[n] for n in names}, "missing_learners": missing,
        "device": "cpu, 1 thread", "runs": runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"blackbox_omniglot{args.tag}"
    stem.with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
    md = (f"# Black-box vs MAML/ProtoNet on Omniglot (held-out alphabets: {', '.join(held_out)})\n\n"
          f"`{command}`, wall {out['wall_s']} s, {out['device']}; budget {out['budget']}\n\n{table(runs)}\n")
    if missing:
        md += f"\nNot registered when run: {', '.join(missing)}\n"
    stem.with_suffix(".md").write_text(md)
    return md

if __name__ == "__main__":
    main()
