"""Where a second-order MAML meta-step spends its time, beside the floor (torch.profiler).

Conv4-64, 5-way 1-shot, 15 queries per class, 4 tasks per meta-step, random 28x28 images,
1 torch thread; 3 meta-steps of each after a warm-up, operators by self CPU time. Explains
benchmarks/RESULTS.md's "ours / floor" ratio: the second-order pass adds convolution and batch
norm work on the support sets, not Python overhead.

    python benchmarks/profile_meta_training.py     # writes results/meta_training_speed-profile.txt
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from reporting import RESULTS, command, setup

from models.episodes import Episode, ProblemSpec
from models.learners import build_learner


def main() -> None:
    setup(1)
    spec = ProblemSpec((1, 28, 28), "classification", n_way=5)
    torch.manual_seed(0)
    learner = build_learner("maml", spec, {"channels": 64, "inner_lr": 0.4})
    g = torch.Generator().manual_seed(0)
    episodes = [Episode(torch.rand(5, 1, 28, 28, generator=g), torch.arange(5),
                        torch.rand(75, 1, 28, 28, generator=g), torch.arange(5).repeat(15)) for _ in range(4)]

    def floor() -> None:
        for e in episodes:
            loss = F.cross_entropy(learner.net(e.support_x), e.support_y) + F.cross_entropy(learner.net(e.query_x), e.query_y)
            loss.backward()

    parts = [f"Command: `{command()}`\n"]
    for label, step in [("ours, second-order 1 step", lambda: learner.meta_train_step(episodes)), ("floor", floor)]:
        step()  # warm-up
        with torch.profiler.profile() as prof:
            for _ in range(3):
                step()
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
        parts.append(f"== {label}: 3 meta-steps of 4 tasks, operators by self CPU\n{table}")
        print(parts[-1], flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "meta_training_speed-profile.txt").write_text("\n".join(parts))


if __name__ == "__main__":
    main()
