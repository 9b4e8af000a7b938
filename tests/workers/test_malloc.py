"""Workers keep freed memory in glibc's heap: a meta-training step stops faulting in fresh pages,
at one torch thread and with a meta-batch's tasks across two (meta_batch_mode "threads": each
thread allocates from its own arena).

glibc alone adapts its mmap threshold to a simple repeated allocation, so the probe is the real
thing: second-order MAML steps on Conv4, whose activations come in many sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import ctypes, json, resource, sys
import torch
torch.set_num_threads(int(sys.argv[2]))
if sys.argv[1].startswith("tuned"):
    from workers.memory import M_TOP_PAD, keep_freed_memory
    assert keep_freed_memory()
    if sys.argv[1] == "tuned-without-top-pad":
        assert ctypes.CDLL("libc.so.6").mallopt(M_TOP_PAD, 128 * 1024)  # glibc's default
from models.episodes import Episode, ProblemSpec
from models.learners import build_learner
torch.manual_seed(0)
learner = build_learner("maml", ProblemSpec((1, 28, 28), "classification", n_way=5), {"channels": 64, "inner_lr": 0.4})
g = torch.Generator().manual_seed(0)
episodes = [Episode(torch.rand(5, 1, 28, 28, generator=g), torch.arange(5),
                    torch.rand(75, 1, 28, 28, generator=g), torch.arange(5).repeat(15)) for _ in range(2 * torch.get_num_threads())]  # two tasks a thread
for _ in range(2):  # the heap grows to its working size
    learner.meta_train_step(episodes)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(2):
    learner.meta_train_step(episodes)
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before))
"""


def _faults(mode: str, threads: int = 1) -> int:
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:6379/13", "OMP_NUM_THREADS": str(threads)}
    for key in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX"):
        env.pop(key, None)
    done = subprocess.run([sys.executable, "-c", PROBE, mode, str(threads)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(json.loads(done.stdout.strip().splitlines()[-1]))


def test_tuned_malloc_reuses_freed_blocks() -> None:
    # Page faults also come from the kernel's side (a page reclaimed, a huge page split) and from
    # where the heap happens to lie (here a quarter of tuned runs fault 1,839 times where the rest
    # fault under 10; CI once saw 2,760 tuned against 13,725 by default): the least of three runs
    # is the allocator's own count, and the margin is a factor of 3, not 10.
    default, tuned = min(_faults("default") for _ in range(2)), min(_faults("tuned") for _ in range(3))
    assert default > 3000, f"the probe no longer faults by default ({default}): it tests nothing"
    assert tuned < default / 3, f"page faults in 2 meta-steps: {default} by default, {tuned} tuned"


def test_tuned_malloc_reuses_freed_blocks_in_the_task_threads() -> None:
    # At two torch threads a meta-batch's tasks run in two threads, each allocating from its own
    # arena, whose heaps glibc unmaps once empty unless the top pad asks for a heap's worth of room.
    without_pad = min(_faults("tuned-without-top-pad", threads=2) for _ in range(2))
    tuned = min(_faults("tuned", threads=2) for _ in range(3))
    assert without_pad > 3000, f"the threads no longer fault without the top pad ({without_pad}): it tests nothing"
    assert tuned < without_pad / 3, f"page faults in 2 meta-steps at 2 threads: {without_pad} without the top pad, {tuned} tuned"
