"""An uploaded npz with a `task` array as named tasks: each task its own regression or
classification problem (its own loss). The train split's tasks are the model's training
tasks; the val and test splits' tasks are new tasks, for adaptation. 80% of a training task's
examples train, the rest score it (held_out)."""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from models.arrays import SPLIT_FRACTION, ArrayData, split_groups, task_names
from models.episodes import Episode, ProblemSpec, Split, SplitNames
from models.multitask.families import TaskEpisode, task_order

HELD_OUT_FRACTION = 0.2


class UploadedTasks:
    def __init__(self, data: ArrayData, k_support: int, k_query: int, seed: int = 0,
                 val_fraction: float = SPLIT_FRACTION, test_fraction: float = SPLIT_FRACTION) -> None:
        if data.task is None:
            raise ValueError("the multitask learner needs an uploaded npz with a `task` array saying which task each example is of")
        self.data, self.k_support, self.k_query = data, k_support, k_query
        n_tasks = int(data.task.max()) + 1
        self.splits = split_groups(n_tasks, 1, seed, val_fraction, test_fraction, unit="tasks")
        gen = torch.Generator().manual_seed(seed)
        self.members: list[Tensor] = []  # example indices of each task, shuffled
        self.classes: list[list[int]] = []  # classification: the dataset's class ids in each task
        for t in range(n_tasks):
            idx = torch.nonzero(data.task == t).flatten()
            self.members.append(idx[torch.randperm(len(idx), generator=gen)])
            if data.output == "classification":
                self.classes.append(torch.unique(data.y[idx]).tolist())
        self.n_way = max((len(c) for c in self.classes), default=0)
        if data.output == "classification" and self.n_way < 2:
            raise ValueError("every classification task needs at least two classes")

    @functools.cached_property
    def spec(self) -> ProblemSpec:
        """Vector inputs standardised with the statistics of the training tasks' examples."""
        return self.data.spec(self.n_way, torch.cat([self.members[t] for t in self.splits["train"]]))

    @property
    def task_names(self) -> list[str]:
        return [f"task_{t}" for t in self.splits["train"]]

    def split_names(self) -> SplitNames:
        """The dataset's tasks in each split, `task_<i>` as in task_names."""
        return SplitNames.of("tasks", self.splits, task_names(len(self.members)))

    def task_labels(self, task: int) -> list[str] | None:
        if self.data.output != "classification":
            return None
        names = self.data.class_names
        return [names[c] if c < len(names) else str(c) for c in self.classes[self.splits["train"][task]]]

    def _targets(self, task_id: int, idx: Tensor) -> Tensor:
        y = self.data.y[idx]
        if self.data.output == "regression":
            return y
        local = {c: i for i, c in enumerate(self.classes[task_id])}  # dataset class id -> the task's label
        return torch.tensor([local[int(c)] for c in y], dtype=torch.int64)

    def _pools(self, task_id: int) -> tuple[Tensor, Tensor]:
        idx = self.members[task_id]
        cut = max(int(len(idx) * (1 - HELD_OUT_FRACTION)), 1)
        return idx[:cut], idx[cut:] if cut < len(idx) else idx[-1:]

    def held_out(self, task: int, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        task_id = self.splits["train"][task]
        pool = self._pools(task_id)[1][:n]
        return self.data.x[pool], self._targets(task_id, pool)

    def sample(self, split: Split, n_tasks: int, generator: torch.Generator) -> list[Episode]:
        k = self.k_support
        if split == "train":
            episodes: list[Episode] = []
            for task in task_order(len(self.task_names), n_tasks, generator):
                task_id = self.splits["train"][task]
                pool = self._pools(task_id)[0]
                idx = pool[torch.randint(len(pool), (k + self.k_query,), generator=generator)]
                x, y = self.data.x[idx], self._targets(task_id, idx)
                episodes.append(TaskEpisode(x[:k], y[:k], x[k:], y[k:], task=task))
            return episodes
        out: list[Episode] = []
        groups = self.splits[split]
        if not groups:
            raise ValueError(f"this dataset's split {split!r} has no tasks (its fraction is 0)")
        for _ in range(n_tasks):
            task_id = groups[int(torch.randint(len(groups), (), generator=generator))]
            idx = self.members[task_id]
            idx = idx[torch.randperm(len(idx), generator=generator)[: k + self.k_query]]
            x, y = self.data.x[idx], self._targets(task_id, idx)
            out.append(Episode(x[:k], y[:k], x[k:], y[k:]))
        return out
