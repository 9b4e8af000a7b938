"""A run resumed from a checkpoint ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import pytest
import torch

from models.checkpoint import capture, restore
from models.learners import build_learner
from models.recipe import DataSources, build_tasks, resolve
from models.training import meta_train
from store.artifacts import ArtifactStore


@pytest.mark.parametrize("algorithm", ["maml", "protonet"])
def test_resumed_run_equals_uninterrupted_run(tmp_path, omniglot_dir, dataset_cache, algorithm):
    config = {"steps": 6, "meta_batch_size": 2, "k_query": 2, "channels": 8}
    recipe = resolve(algorithm, "omniglot", config)
    tasks = build_tasks(recipe, DataSources(omniglot_dir, dataset_cache))

    def fresh():
        torch.manual_seed(0)
        return build_learner(algorithm, tasks.spec, recipe.learner)

    straight = fresh()
    meta_train(straight, tasks, 6, 2, seed=0)

    first = fresh()
    saved = {}

    def on_step(step, total, metrics):
        if step == 3:
            saved["ckpt"] = capture(first, generator, step)
            raise KeyboardInterrupt  # the worker dies here

    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        meta_train(first, tasks, 6, 2, seed=0, on_step=on_step, generator=generator)

    store = ArtifactStore(tmp_path)  # through safetensors, as a worker would
    ckpt = saved["ckpt"]
    store.save("ckpt.safetensors", ckpt.tensors, ckpt.metadata)
    tensors, metadata = store.load_with_metadata("ckpt.safetensors")

    torch.manual_seed(123)  # a new process: nothing carried over but the checkpoint
    resumed = build_learner(algorithm, tasks.spec, recipe.learner)
    step, gen = restore(resumed, tensors, metadata)
    assert step == 3
    meta_train(resumed, tasks, 6, 2, seed=0, start_step=step, generator=gen)
    for key, value in straight.state().items():
        assert torch.equal(value, resumed.state()[key]), key


def test_a_checkpoint_refuses_another_algorithm(omniglot_dir, dataset_cache):
    recipe = resolve("maml", "omniglot", {"channels": 8})
    tasks = build_tasks(recipe, DataSources(omniglot_dir, dataset_cache))
    maml = build_learner("maml", tasks.spec, recipe.learner)
    ckpt = capture(maml, torch.Generator(), 1)
    other = build_learner("protonet", tasks.spec, resolve("protonet", "omniglot", {"channels": 8}).learner)
    with pytest.raises(ValueError, match="cannot resume"):
        restore(other, ckpt.tensors, ckpt.metadata)
