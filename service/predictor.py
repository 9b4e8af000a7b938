"""Serving predictions in the API process from an LRU cache of learners and task states."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

import torch

from models.episodes import ProblemSpec
from models.learners import Learner, Params, load_learner
from store.artifacts import ArtifactStore
from store.db import Model, Task

K = TypeVar("K")
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_load(self, key: K, load: Callable[[], V]) -> V:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            self.misses += 1
        value = load()
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)

    def discard(self, key: K) -> None:
        with self._lock:
            self._items.pop(key, None)


class Predictor:
    """Learners by model id and adapted states by task id, loaded from the artifact store once."""

    def __init__(self, store: ArtifactStore, task_capacity: int, model_capacity: int = 16) -> None:
        self.store = store
        self.learners: LRUCache[str, Learner] = LRUCache(model_capacity)
        self.states: LRUCache[str, Params] = LRUCache(task_capacity)
        # functional_call swaps a module's parameters while it runs: two request threads must
        # not run the same learner at once.
        self._running: dict[str, threading.Lock] = {}
        self._running_lock = threading.Lock()

    def learner(self, model: Model) -> Learner:
        def load() -> Learner:
            theta = self.store.load(model.artifact)
            return load_learner(model.algorithm, ProblemSpec.from_json(model.spec), model.learner_config, theta)

        return self.learners.get_or_load(model.id, load)

    def predict(self, model: Model, task: Task, inputs: torch.Tensor) -> torch.Tensor:
        assert task.artifact is not None
        learner = self.learner(model)
        phi = self.states.get_or_load(task.id, lambda: self.store.load(task.artifact or ""))
        with self._running_lock:
            lock = self._running.setdefault(model.id, threading.Lock())
        with lock:
            return learner.predict(phi, inputs)

    def forget_task(self, task_id: str) -> None:
        self.states.discard(task_id)

    def forget_model(self, model_id: str) -> None:
        self.learners.discard(model_id)
