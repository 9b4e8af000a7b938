"""MNIST digit groups as classification tasks: training task g tells apart the digits of group
g (n_way consecutive digits: 0-1, 2-3, ... for n_way = 2); a new task tells apart any other
set of n_way digits. Each digit's images are split once into training and held-out images;
new tasks and held-out scoring use the held-out ones only."""

from __future__ import annotations

import torch
from torch import Tensor

from models.episodes import Episode, ProblemSpec, Split
from models.mnist import MNIST_FORMAT
from models.modality import ImageModality
from models.multitask.families import TaskEpisode, task_order

HELD_OUT_FRACTION = 0.2


class MnistDigitGroups:
    def __init__(self, images: Tensor, labels: Tensor, n_way: int = 2, k_support: int = 5, k_query: int = 15,
                 seed: int = 0) -> None:
        if not 2 <= n_way <= 9:
            raise ValueError("MNIST digit-group tasks need n_way between 2 and 9")
        self.images, self.n_way = images, n_way  # images [N, 28, 28]
        self.k_support, self.k_query = k_support, k_query
        self.groups = [list(range(s, s + n_way)) for s in range(0, 10 - n_way + 1, n_way)]
        gen = torch.Generator().manual_seed(seed)
        self.train_pool: dict[int, Tensor] = {}
        self.held_pool: dict[int, Tensor] = {}
        for digit in range(10):
            idx = torch.nonzero(labels == digit).flatten()
            idx = idx[torch.randperm(len(idx), generator=gen)]
            cut = int(len(idx) * (1 - HELD_OUT_FRACTION))
            self.train_pool[digit], self.held_pool[digit] = idx[:cut], idx[cut:]
            if len(self.held_pool[digit]) < k_support + k_query:
                raise ValueError(f"digit {digit} has too few images for k_shot + k_query = {k_support + k_query}")

    @property
    def spec(self) -> ProblemSpec:
        size = self.images.shape[-1]
        return ProblemSpec.of(ImageModality(1, size, MNIST_FORMAT.invert), "classification", n_way=self.n_way)

    @property
    def task_names(self) -> list[str]:
        return ["digits_" + "_".join(map(str, g)) for g in self.groups]

    def split_names(self) -> None:
        """None: every digit is trained on (in its group); new tasks are other sets of digits, on
        held-out images. The training tasks are task_names."""
        return None

    def task_labels(self, task: int) -> list[int]:
        return list(self.groups[task])

    def _draw(self, digits: list[int], per_class: int, pools: dict[int, Tensor], generator: torch.Generator) -> tuple[Tensor, Tensor]:
        xs, ys = [], []
        for label, digit in enumerate(digits):
            pool = pools[digit]
            xs.append(self.images[pool[torch.randint(len(pool), (per_class,), generator=generator)]])
            ys.append(torch.full((per_class,), label, dtype=torch.int64))
        return torch.cat(xs).unsqueeze(1), torch.cat(ys)  # [n, 1, 28, 28], [n]

    def held_out(self, task: int, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return self._draw(self.groups[task], max(n // self.n_way, 1), self.held_pool, generator)

    def sample(self, split: Split, n_tasks: int, generator: torch.Generator) -> list[Episode]:
        episodes: list[Episode] = []
        if split == "train":
            for task in task_order(len(self.groups), n_tasks, generator):
                x, y = self._draw(self.groups[task], self.k_support + self.k_query, self.train_pool, generator)
                perm = torch.randperm(len(y), generator=generator)
                x, y = x[perm], y[perm]
                k = self.k_support * self.n_way
                episodes.append(TaskEpisode(x[:k], y[:k], x[k:], y[k:], task=task))
            return episodes
        trained = [set(g) for g in self.groups]
        while len(episodes) < n_tasks:
            digits = torch.randperm(10, generator=generator)[: self.n_way].tolist()
            if set(digits) in trained:
                continue
            sx, sy = self._draw(digits, self.k_support, self.held_pool, generator)
            qx, qy = self._draw(digits, self.k_query, self.held_pool, generator)
            episodes.append(Episode(sx, sy, qx, qy))
        return episodes
