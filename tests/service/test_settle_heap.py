"""An API process settles its heap before serving: what the first model load would import is
imported, and everything alive is frozen out of the cyclic collector's full collections, which
scanned about 300,000 objects (150-240 ms pauses of every request in flight) before."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import gc, json, sys
from service.main import settle_heap
settle_heap()
frozen, modules = gc.get_freeze_count(), set(sys.modules)
import torch
from models.episodes import ProblemSpec
from models.learners import build_learner
learner = build_learner("maml", ProblemSpec((1, 28, 28), "classification", n_way=5), {"channels": 8})
with torch.no_grad():
    learner.predict(learner.adapt(torch.rand(5, 1, 28, 28), torch.arange(5)), torch.rand(2, 1, 28, 28))
gc.collect()
print(json.dumps({"frozen": frozen, "new_modules": sorted(set(sys.modules) - modules), "tracked": len(gc.get_objects())}))
"""


def test_settle_heap_imports_what_a_first_model_needs_and_freezes_the_rest() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    # Before: building the first learner imported 812 modules (torch.optim imports torch._dynamo, sympy...).
    assert len(seen["new_modules"]) < 50, seen["new_modules"]
    assert seen["frozen"] > 100_000, seen
    assert seen["tracked"] < seen["frozen"] / 5, seen  # what a full collection still scans
