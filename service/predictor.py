"""Serving predictions in the API process from an LRU cache of learners and task states."""

from __future__ import annotations

import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

import torch

from models.episodes import ProblemSpec
from models.learners import Learner, Params, load_learner
from service.batching import ModelBatcher
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

    def peek(self, key: K) -> V | None:
        """The cached value or None, counted as a hit; never loads (the event loop calls it)."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
                self.hits += 1
            return value

    def __len__(self) -> int:
        return len(self._items)

    def discard(self, key: K) -> None:
        with self._lock:
            self._items.pop(key, None)


class Replicas:
    """Copies of one model's learner, each run by one thread at a time.

    functional_call swaps a module's parameters while it runs, so two request threads must not
    run the same copy at once; with one copy per core two predictions of one model run side by
    side (torch releases the GIL in its kernels), where a single lock per model kept one core idle.
    """

    def __init__(self, copies: list[Learner]) -> None:
        self.spec: ProblemSpec = copies[0].spec
        self.copies = copies
        self.batcher: ModelBatcher | None = None  # made by the predictor on first batched use
        self._free: queue.SimpleQueue[Learner] = queue.SimpleQueue()
        for learner in copies:
            self._free.put(learner)

    def predict(self, phi: Params, inputs: torch.Tensor) -> torch.Tensor:
        learner = self._free.get()
        try:
            return learner.predict(phi, inputs)
        finally:
            self._free.put(learner)


class Predictor:
    """Learners by model id and adapted states by task id, loaded from the artifact store once.

    `replicas` copies of each learner (default: one per core, at most 2; each runs torch on one
    thread, FEWSHOT_TORCH_THREADS) bound how many predictions of one model run at once.
    """

    def __init__(
        self, store: ArtifactStore, task_capacity: int, model_capacity: int = 16, replicas: int | None = None,
        batch_window: float = 0.002, max_batch: int = 64,
    ) -> None:
        self.store = store
        self.replicas = replicas or max(1, min(2, os.cpu_count() or 1))
        self.batch_window = batch_window  # seconds (FEWSHOT_PREDICT_BATCH_WINDOW_MS)
        self.max_batch = max_batch
        self._executor = ThreadPoolExecutor(max_workers=self.replicas, thread_name_prefix="predict")
        self.learners: LRUCache[str, Replicas] = LRUCache(model_capacity)
        self.states: LRUCache[str, Params] = LRUCache(task_capacity)

    def learner_for(self, model_id: str, model_row: Callable[[], Model]) -> Replicas:
        """The model's learners; `model_row` is called only on a cache miss (models never change)."""

        def load() -> Replicas:
            model = model_row()
            theta = self.store.load(model.artifact)
            spec = ProblemSpec.from_json(model.spec)
            return Replicas([load_learner(model.algorithm, spec, model.learner_config, theta) for _ in range(self.replicas)])

        return self.learners.get_or_load(model_id, load)

    def predict(self, model: Model, task: Task, inputs: torch.Tensor) -> torch.Tensor:
        assert task.artifact is not None
        return self.run(self.learner_for(model.id, lambda: model), task.id, task.artifact, inputs)

    def run(self, learners: Replicas, task_id: str, artifact: str, inputs: torch.Tensor) -> torch.Tensor:
        """The outputs for the task's state (loaded from `artifact` on a cache miss).

        States are cached by task id: ids are never reused and a ready task never changes, so
        the callers' check that the task still exists is all a delete needs, in every process.
        """
        return learners.predict(self.state(learners, task_id, artifact), inputs)

    def state(self, learners: Replicas, task_id: str, artifact: str) -> Params:
        """The task's state from the cache, else loaded from `artifact` and kept in the form its
        learner predicts from fastest (Learner.serving_state). Blocking on a miss."""
        return self.states.get_or_load(task_id, lambda: learners.copies[0].serving_state(self.store.load(artifact)))

    def batcher(self, learners: Replicas) -> ModelBatcher:
        """The model's batcher (service/batching.py); made on the event loop's first use."""
        if learners.batcher is None:
            learners.batcher = ModelBatcher(learners.copies, self._executor, self.batch_window, self.max_batch)
        return learners.batcher

    def forget_task(self, task_id: str) -> None:
        self.states.discard(task_id)

    def forget_model(self, model_id: str) -> None:
        self.learners.discard(model_id)
