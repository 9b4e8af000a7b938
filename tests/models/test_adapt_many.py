"""adapt_many, the adapt worker's batched adaptation, gives each task the state adapt gives it
alone (within 1e-5): every learner, mixed shapes, classes and options in one call, and the MAML
family both ways (the vmap over tasks, CUDA's default, and the loop, CPU's)."""

from __future__ import annotations

import pytest
import torch

from models.episodes import ProblemSpec
from models.learners import AdaptOptions, AdaptRequest, build_learner
from models.learners.base import Learner
from models.recipe import resolve

IMAGES = ProblemSpec((1, 28, 28), "classification", n_way=5)
SINE = ProblemSpec((1,), "regression", output_dim=1)


def _learner(algorithm: str, spec: ProblemSpec) -> Learner:
    dataset = "sinusoid" if spec.output == "regression" else "omniglot"
    recipe = resolve(algorithm, dataset, {"channels": 8} if dataset == "omniglot" else {})
    torch.manual_seed(0)
    learner = build_learner(algorithm, spec, recipe.learner)
    if algorithm in ("protonet", "finetune"):  # running statistics that are not the identity
        learner.net.train()
        with torch.no_grad():
            learner.net(torch.rand(64, *spec.input_shape))
    return learner


def _requests(spec: ProblemSpec, options: list[AdaptOptions | None]) -> list[AdaptRequest]:
    g = torch.Generator().manual_seed(1)
    out = []
    for i, opts in enumerate(options):
        if spec.output == "regression":
            x = torch.rand(10, 1, generator=g) * 10 - 5
            out.append(AdaptRequest(x, torch.sin(x + i), opts))
            continue
        n, k = (5, 1) if i % 3 else (3, 2)  # two shapes, two class counts: several groups in one call
        x = torch.rand(n * k, *spec.input_shape, generator=g)
        out.append(AdaptRequest(x, torch.arange(n).repeat_interleave(k), opts))
    return out


def _assert_same(batched: list[dict[str, torch.Tensor]], alone: list[dict[str, torch.Tensor]]) -> None:
    assert len(batched) == len(alone)
    for b, a in zip(batched, alone, strict=True):
        assert b.keys() == a.keys()
        for k in a:
            assert b[k].shape == a[k].shape, k
            torch.testing.assert_close(b[k], a[k], atol=1e-5, rtol=1e-5, msg=k)


MAML_FAMILY = ["maml", "fomaml", "metasgd", "anil"]
STEPS = [None, None, AdaptOptions(inner_steps=2), None, AdaptOptions(inner_lr=0.05), None, None]


@pytest.mark.parametrize("vectorize", [True, False])
@pytest.mark.parametrize("algorithm", MAML_FAMILY)
def test_maml_family_batched_states_equal_one_by_one(algorithm, vectorize):
    learner = _learner(algorithm, IMAGES)
    requests = _requests(IMAGES, STEPS)
    alone = [learner.adapt(r.support_x, r.support_y, r.options) for r in requests]
    _assert_same(learner.adapt_many(requests, vectorize=vectorize), alone)  # type: ignore[call-arg]
    # and the states predict as they do alone
    phi = learner.adapt_many(requests, vectorize=vectorize)[1]  # type: ignore[call-arg]
    torch.testing.assert_close(learner.predict(phi, requests[1].support_x), learner.predict(alone[1], requests[1].support_x),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("vectorize", [True, False])
def test_maml_on_regression_batched_states_equal_one_by_one(vectorize):
    learner = _learner("maml", SINE)
    requests = _requests(SINE, [None] * 6)
    alone = [learner.adapt(r.support_x, r.support_y, r.options) for r in requests]
    _assert_same(learner.adapt_many(requests, vectorize=vectorize), alone)  # type: ignore[call-arg]


def test_protonet_batched_states_equal_one_by_one_with_options():
    learner = _learner("protonet", IMAGES)
    learner.config = learner.config.model_copy(update={"test_time_augmentation": 0})
    options = [None, None, AdaptOptions(test_time_augmentation=4), AdaptOptions(feature_normalization=True), None,
               AdaptOptions(test_time_augmentation=4), AdaptOptions(feature_normalization=True)]
    requests = _requests(IMAGES, options)
    alone = [learner.adapt(r.support_x, r.support_y, r.options) for r in requests]
    _assert_same(learner.adapt_many(requests), alone)


def test_protonet_batched_states_take_the_configs_test_time_views():
    learner = _learner("protonet", IMAGES)  # the Omniglot recipe: 8 views unless a task says otherwise
    assert learner.config.test_time_augmentation == 8  # type: ignore[attr-defined]
    requests = _requests(IMAGES, [None, None, AdaptOptions(test_time_augmentation=0), None, AdaptOptions(test_time_augmentation=2)])
    alone = [learner.adapt(r.support_x, r.support_y, r.options) for r in requests]
    batched = learner.adapt_many(requests)
    _assert_same(batched, alone)
    assert [int(phi.get("tta_views", 0)) for phi in batched] == [8, 8, 0, 8, 2]
    # Normalised features of 8 views: an embedding computed in a batch of another size differs in
    # the 7th digit, and centring then scaling to unit length magnifies it (1.4e-5 seen).
    requests = _requests(IMAGES, [AdaptOptions(feature_normalization=True)] * 3)
    for b, a in zip(learner.adapt_many(requests), [learner.adapt(r.support_x, r.support_y, r.options) for r in requests], strict=True):
        torch.testing.assert_close(b["prototypes"], a["prototypes"], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("algorithm", ["finetune", "blackbox"])
def test_other_learners_adapt_many_is_adapt_per_request(algorithm):
    learner = _learner(algorithm, IMAGES)
    requests = _requests(IMAGES, [None] * 4)
    if algorithm != "finetune":  # black-box learners: the trained way's shapes only
        requests = [r for r in requests if len(r.support_y) == 5]
    alone = [learner.adapt(r.support_x, r.support_y, r.options) for r in requests]
    _assert_same(learner.adapt_many(requests), alone)


def test_a_bad_request_fails_the_batched_call():
    learner = _learner("maml", IMAGES)
    good = _requests(IMAGES, [None, None])
    bad = AdaptRequest(torch.rand(5, 1, 14, 14), torch.arange(5))
    with pytest.raises(ValueError, match="shape"):
        learner.adapt_many([*good, bad], vectorize=True)  # type: ignore[call-arg]
