"""Issue 13, point 4: a served answer for an input never depends on the other inputs of its
request. Every classifier of the MAML family, ProtoNet and fine-tuning: an input predicted alone
equals its prediction inside a batch (labels, and probabilities within 1e-5), after meta-training
steps that moved every batch-norm layer, and through a safetensors round trip of the task state."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load, save

from models.episodes import ProblemSpec
from models.learners import build_learner
from models.nets import TASK_STATISTICS
from models.sinusoid import SinusoidTasks
from models.training import meta_train

SPEC = ProblemSpec(input_shape=(1, 28, 28), output="classification", n_way=5)
ALGORITHMS = ["maml", "fomaml", "metasgd", "anil", "protonet", "finetune"]


def _batch(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_an_input_alone_is_answered_as_inside_any_batch(algorithm):
    torch.manual_seed(0)
    learner = build_learner(algorithm, SPEC, {"channels": 8})
    support_x, support_y = _batch(10, 1), torch.arange(5).repeat(2)
    phi = learner.adapt(support_x, support_y)
    phi = load(save(phi))  # as the API reads a task's state back
    queries = _batch(12, 2) * 3 + 0.5  # another distribution than the support set: batch stats would differ
    together = torch.softmax(learner.predict(phi, queries), dim=-1)
    alone = torch.cat([torch.softmax(learner.predict(phi, queries[i : i + 1]), dim=-1) for i in range(len(queries))])
    torch.testing.assert_close(alone, together, rtol=0, atol=1e-5)
    assert torch.equal(alone.argmax(-1), together.argmax(-1))
    half = torch.softmax(learner.predict(phi, queries[:3]), dim=-1)
    torch.testing.assert_close(half, together[:3], rtol=0, atol=1e-5)


@pytest.mark.parametrize("algorithm", ["maml", "anil"])
def test_a_task_stores_its_support_statistics_and_theta_does_not(algorithm):
    learner = build_learner(algorithm, SPEC, {"channels": 8})
    phi = learner.adapt(_batch(5, 3), torch.arange(5))
    stored = sorted(k for k in phi if k.endswith(TASK_STATISTICS))
    assert len(stored) == 8, stored  # mean and variance of the four conv blocks
    assert all(phi[k].shape == (8,) and torch.isfinite(phi[k]).all() for k in stored)
    assert not any(k.endswith(TASK_STATISTICS) for k in learner.state())  # the model's weights stay as they were


def test_vector_models_have_no_statistics_to_store():
    tasks = SinusoidTasks(k_support=5, k_query=5)
    learner = build_learner("maml", tasks.spec, {})
    meta_train(learner, tasks, 2, 2, seed=0)
    ep = tasks.sample("test", 1, torch.Generator().manual_seed(0))[0]
    phi = learner.adapt(ep.support_x, ep.support_y)
    assert not any(k.endswith(TASK_STATISTICS) for k in phi)
    together = learner.predict(phi, ep.query_x)
    alone = torch.cat([learner.predict(phi, ep.query_x[i : i + 1]) for i in range(len(ep.query_x))])
    torch.testing.assert_close(alone, together, rtol=0, atol=1e-5)
