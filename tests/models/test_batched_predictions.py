"""Issue 15, point 1: dynamic batching answers as one predict per request. For every learner with a
batched form (ProtoNet: one embedding pass; MAML family: vmap over stacked task states; black-box:
stacked summaries; fine-tuning: one body pass) predict_many over tasks of different class counts
and request sizes equals one predict per (task, inputs): labels, and probabilities within 1e-5."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load, save

from models.episodes import ProblemSpec
from models.learners import AdaptOptions, build_learner

IMAGES = ProblemSpec(input_shape=(1, 28, 28), output="classification", n_way=5)
VECTORS = ProblemSpec(input_shape=(6,), output="regression", output_dim=1)
LEARNERS = [
    ("maml", {"channels": 8}),
    ("fomaml", {"channels": 8}),
    ("metasgd", {"channels": 8}),
    ("anil", {"channels": 8}),
    ("protonet", {"channels": 8}),
    ("finetune", {"channels": 8}),
    ("finetune", {"channels": 8, "scope": "all"}),
    ("blackbox", {"architecture": "mann", "channels": 8, "width": 32, "hidden": [16]}),
    ("blackbox", {"architecture": "attention", "channels": 8, "width": 32, "hidden": [16]}),
]


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("algorithm", "config"), LEARNERS, ids=[f"{a}-{c.get('architecture', c.get('scope', ''))}" for a, c in LEARNERS])
def test_batched_predictions_equal_one_call_per_request(algorithm, config):
    torch.manual_seed(0)
    learner = build_learner(algorithm, IMAGES, config)
    phis = []
    for seed, n_classes in enumerate([5, 5, 3, 5, 3]):
        labels = torch.arange(n_classes).repeat(2)
        phis.append(load(save(learner.adapt(_images(len(labels), seed), labels))))  # as the API reads it back
    # Tasks of 5 and 3 classes, one input or three, one task asked twice: every grouping path.
    requests = [(phis[0], _images(1, 10)), (phis[1], _images(1, 11)), (phis[2], _images(1, 12)),
                (phis[3], _images(3, 13)), (phis[4], _images(1, 14)), (phis[0], _images(1, 15)), (phis[1], _images(3, 16))]
    batched = learner.predict_many(requests)
    assert len(batched) == len(requests)
    for (phi, x), out in zip(requests, batched, strict=True):
        alone = learner.predict(phi, x)
        assert out.shape == alone.shape
        torch.testing.assert_close(torch.softmax(out, -1), torch.softmax(alone, -1), rtol=0, atol=1e-5)
        assert torch.equal(out.argmax(-1), alone.argmax(-1))


@pytest.mark.parametrize("algorithm", ["maml", "blackbox"])
def test_batched_regression_equals_one_call_per_request(algorithm):
    torch.manual_seed(0)
    learner = build_learner(algorithm, VECTORS, {"hidden": [16]})
    g = torch.Generator().manual_seed(0)
    phis = [learner.adapt(torch.randn(5, 6, generator=g), torch.randn(5, 1, generator=g)) for _ in range(3)]
    requests = [(phi, torch.randn(2, 6, generator=g)) for phi in phis]
    for (phi, x), out in zip(requests, learner.predict_many(requests), strict=True):
        torch.testing.assert_close(out, learner.predict(phi, x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("algorithm", ["protonet", "finetune"])
def test_batched_predictions_repeat_each_tasks_test_time_views_and_normalisation(algorithm):
    # A bug found with test-time augmentation on by default: predict_many embedded every input once,
    # plainly, whatever views or normalisation the task had adapted with.
    torch.manual_seed(0)
    learner = build_learner(algorithm, IMAGES, {"channels": 8})
    labels = torch.arange(5)
    options = [AdaptOptions(), AdaptOptions(test_time_augmentation=4), AdaptOptions(feature_normalization=True),
               AdaptOptions(test_time_augmentation=4, feature_normalization=True), AdaptOptions(test_time_augmentation=2)]
    phis = [load(save(learner.adapt(_images(5, seed), labels, o))) for seed, o in enumerate(options)]
    requests = [(phi, _images(2, 20 + i)) for i, phi in enumerate(phis)] + [(phis[1], _images(1, 30))]
    for (phi, x), out in zip(requests, learner.predict_many(requests), strict=True):
        torch.testing.assert_close(out, learner.predict(phi, x), rtol=1e-5, atol=1e-5)


def test_protonet_config_turns_test_time_views_on_for_tasks_that_leave_them_unset():
    torch.manual_seed(0)
    learner = build_learner("protonet", IMAGES, {"channels": 8, "test_time_augmentation": 4})
    x, labels = _images(5, 0), torch.arange(5)
    by_default = learner.adapt(x, labels)
    assert int(by_default["tta_views"]) == 4
    torch.testing.assert_close(by_default["prototypes"], learner.adapt(x, labels, AdaptOptions(test_time_augmentation=4))["prototypes"])
    assert "tta_views" not in learner.adapt(x, labels, AdaptOptions(test_time_augmentation=0))  # a task's own 0 wins
    assert "tta_views" not in build_learner("protonet", VECTORS.__class__((6,), "classification", n_way=3),
                                            {"test_time_augmentation": 4}).adapt(torch.rand(3, 6), torch.arange(3))
