"""Serving's direct Conv4 gradients (models.direct_grad) are autograd's: per step, and through a
whole adaptation of MAML, first-order MAML and Meta-SGD (adapted weights, stored batch-norm
statistics and the support outputs checked); a served task's direct predictions are
functional_call's; the direct paths stay off where they are not the same maths."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from models import direct_grad
from models.direct_grad import applies, conv4_cross_entropy_gradients, conv4_support_pass
from models.episodes import ProblemSpec
from models.learners import AdaptOptions, build_learner
from models.learners import maml as maml_module
from models.learners.inner import inner_loop
from models.nets import Conv4, support_statistics
from models.vectorized import vmap_tasks


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal to float32 rounding, relative to the larger tensor's scale."""
    return bool((a - b).abs().max() <= 1e-5 * max(1.0, float(b.abs().max())))


@pytest.mark.parametrize(("shape", "channels", "classes"), [((1, 28, 28), 16, 5), ((3, 20, 20), 8, 3), ((1, 32, 32), 4, 2)])
def test_direct_gradients_equal_autograds(shape, channels, classes):
    torch.manual_seed(0)
    net = Conv4(shape[0], shape[1], 5, channels)
    params = {k: v.detach() for k, v in net.named_parameters()}
    params["head.weight"], params["head.bias"] = params["head.weight"][:classes], params["head.bias"][:classes]
    x, y = torch.randn(2 * classes, *shape), torch.arange(classes).repeat(2)
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    loss = F.cross_entropy(functional_call(net, leaves, (x,)), y)
    expected = dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values())), strict=True))
    with torch.no_grad():
        assert applies(net, x)
        got = conv4_cross_entropy_gradients(net, params, x, y)
    assert set(got) == set(expected)
    for k in expected:
        assert close(got[k], expected[k]), k

    with torch.no_grad():
        statistics, outputs = conv4_support_pass(net, params, x)
        hooked, hooked_outputs = support_statistics(net, lambda: functional_call(net, params, (x,)))
    assert set(statistics) == set(hooked)
    assert all(close(statistics[k], hooked[k]) for k in hooked)
    assert close(outputs, hooked_outputs)


@pytest.mark.parametrize(("algorithm", "config"), [
    ("maml", {}), ("fomaml", {}), ("metasgd", {"lr_granularity": "parameter"}), ("metasgd", {"lr_granularity": "tensor"}),
])
@pytest.mark.parametrize("classes", [5, 3])
def test_adaptation_through_direct_gradients_equals_autograds(algorithm, config, classes):
    """The stored state (adapted weights and support statistics) is the same either way."""
    torch.manual_seed(0)
    spec = ProblemSpec((1, 28, 28), "classification", n_way=5)
    learner = build_learner(algorithm, spec, {"channels": 8, "inner_lr": 0.4, "adapt_steps": 3, **config})
    x, y = torch.rand(2 * classes, 1, 28, 28), torch.arange(classes).repeat(2)
    direct = learner.adapt(x, y)
    direct_grad.DIRECT_ON_CPU = False
    try:
        reference = learner.adapt(x, y)
        reference_steps = learner.adapt(x, y, AdaptOptions(inner_steps=1, inner_lr=0.1))
    finally:
        direct_grad.DIRECT_ON_CPU = True
    assert set(direct) == set(reference)
    for k in reference:
        assert close(direct[k], reference[k]), k
    assert any(not torch.equal(direct[k], learner.state()[k]) for k in learner.state())  # the steps moved theta
    options = learner.adapt(x, y, AdaptOptions(inner_steps=1, inner_lr=0.1))
    assert all(close(options[k], reference_steps[k]) for k in reference_steps)
    assert direct["head.weight"].is_contiguous() and direct["features.1.conv.weight"].is_contiguous()  # stored NCHW


def test_direct_path_only_where_it_is_the_same_maths():
    torch.manual_seed(0)
    net, x = Conv4(1, 28, 5, 4), torch.rand(2, 1, 28, 28)
    assert not applies(net, x)  # grad mode on: meta-training differentiates with autograd
    with torch.no_grad():
        assert applies(net, x)
        assert not applies(Conv4(1, 28, 5, 4, running_stats=True), x)  # ProtoNet's and fine-tuning's running statistics
        assert not applies(net, x.double())
        assert not applies(torch.nn.Linear(4, 2), x)
        seen: list[bool] = []
        vmap_tasks(lambda xi: seen.append(applies(net, xi)) or xi.sum(), x[:, None])
        assert seen == [False]
        direct_grad.DIRECT_ON_CPU = False
        try:
            assert not applies(net, x)
        finally:
            direct_grad.DIRECT_ON_CPU = True
    params = {k: v.detach() for k, v in net.named_parameters()}
    gradients = lambda p, x, y: conv4_cross_entropy_gradients(net, p, x, y)  # noqa: E731
    forward = lambda p, x: functional_call(net, p, (x,))  # noqa: E731
    with pytest.raises(ValueError, match="serve adaptation only"):  # grad mode on
        inner_loop(forward, params, x, torch.arange(2), F.cross_entropy, 1, 0.1, create_graph=False, gradients=gradients)
    with torch.no_grad(), pytest.raises(ValueError, match="serve adaptation only"):
        inner_loop(forward, params, x, torch.arange(2), F.cross_entropy, 1, 0.1, create_graph=False,
                   adapt_keys=["head.weight"], gradients=gradients)


@pytest.mark.parametrize(("algorithm", "config"), [("maml", {}), ("fomaml", {}), ("metasgd", {"lr_granularity": "parameter"})])
@pytest.mark.parametrize(("shape", "classes"), [((1, 28, 28), 5), ((1, 28, 28), 3), ((3, 20, 20), 4)])
def test_served_predictions_through_the_direct_path_equal_functional_calls(algorithm, config, shape, classes, monkeypatch):
    """A served task's predictions (predict, and predict_many over several tasks) are the same through
    direct_grad.conv4_predict as through functional_call and the module's task-statistics batch norms,
    from the stored state and from the API's folded one (MAML.serving_state: batch norms folded into
    the convolutions). Each state's batch-norm scales and shifts are redrawn, negative ones included,
    and its statistics moved away from (0, 1), so a fold that drops or misplaces a term shows."""
    torch.manual_seed(0)
    spec = ProblemSpec(shape, "classification", n_way=5)
    learner = build_learner(algorithm, spec, {"channels": 8, "inner_lr": 0.4, "adapt_steps": 2, **config})
    phis = [learner.adapt(torch.rand(2 * classes, *shape), torch.arange(classes).repeat(2)) for _ in range(3)]
    for phi in phis:
        for k in [k for k in phi if ".norm." in k]:
            if k.endswith((".weight", ".bias")):
                phi[k] = torch.randn_like(phi[k])
            elif k.endswith(".task_mean"):
                phi[k] = phi[k] + torch.randn_like(phi[k])
            elif k.endswith(".task_var"):
                phi[k] = phi[k] * (0.5 + torch.rand_like(phi[k]))
    inputs = [torch.rand(1, *shape), torch.rand(6, *shape), torch.rand(3, *shape).contiguous(memory_format=torch.channels_last)]
    direct_grad.DIRECT_ON_CPU = False
    try:
        reference = [learner.predict(phi, x) for phi, x in zip(phis, inputs, strict=True)]
    finally:
        direct_grad.DIRECT_ON_CPU = True
    folded = [learner.serving_state(phi) for phi in phis]
    assert all(direct_grad.is_folded(state) and not any(".norm." in k for k in state) for state in folded)
    calls: list[int] = []
    real = direct_grad.conv4_predict
    monkeypatch.setattr(maml_module, "conv4_predict", lambda net, phi, x: calls.append(len(x)) or real(net, phi, x))
    for states in (phis, folded):
        calls.clear()
        one_by_one = [learner.predict(phi, x) for phi, x in zip(states, inputs, strict=True)]
        together = learner.predict_many(list(zip(states, inputs, strict=True)))
        assert calls == [1, 6, 3, 1, 6, 3]  # the direct path ran for every one
        for expected, single, batched in zip(reference, one_by_one, together, strict=True):
            assert single.shape == batched.shape == expected.shape and expected.shape[1] == classes
            assert close(single, expected) and close(batched, expected)
            assert torch.equal(single.argmax(1), expected.argmax(1))
            assert (single.softmax(1) - expected.softmax(1)).abs().max() <= 1e-5


def test_folded_states_predict_only_through_the_direct_path():
    """A folded serving state holds no parameter of the module, so functional_call would run the
    module's own weights for it: it goes to conv4_predict whatever the mode and input (grad mode on,
    a float64 input), in predict and beside requests that need the vmap in predict_many; states
    without support statistics, ANIL's and a network the direct path does not compute are not folded."""
    torch.manual_seed(0)
    spec = ProblemSpec((1, 28, 28), "classification", n_way=5)
    maml = build_learner("maml", spec, {"channels": 4})
    phis = [maml.adapt(torch.rand(5, 1, 28, 28), torch.arange(5)) for _ in range(3)]
    state = maml.serving_state(phis[0])
    x = torch.rand(2, 1, 28, 28)
    expected = maml.predict(phis[0], x)
    assert maml._predicts_directly(state, x) and maml._predicts_directly(state, x.double())  # grad mode on
    assert close(maml.predict(state, x), expected) and close(maml.predict(state, x.double()), expected)
    # states without support statistics take the vmap (batch statistics), the folded one the direct path
    weights_only = [{k: v for k, v in phi.items() if "task_" not in k} for phi in phis]
    mixed = maml.predict_many([(weights_only[1], x), (state, x), (weights_only[2], x)])
    assert close(mixed[1], expected)
    assert close(mixed[0], maml.predict(weights_only[1], x)) and close(mixed[2], maml.predict(weights_only[2], x))
    assert not direct_grad.is_folded(maml.serving_state(weights_only[0]))
    anil = build_learner("anil", spec, {"channels": 4})
    assert not direct_grad.is_folded(anil.serving_state(anil.adapt(torch.rand(5, 1, 28, 28), torch.arange(5))))
    direct_grad.DIRECT_ON_CPU = False
    try:
        assert not direct_grad.is_folded(maml.serving_state(phis[0]))
    finally:
        direct_grad.DIRECT_ON_CPU = True


def test_direct_predictions_only_where_they_are_the_same_maths():
    torch.manual_seed(0)
    spec = ProblemSpec((1, 28, 28), "classification", n_way=5)
    x = torch.rand(2, 1, 28, 28)
    maml = build_learner("maml", spec, {"channels": 4})
    phi = maml.adapt(torch.rand(5, 1, 28, 28), torch.arange(5))
    assert maml._predicts_directly(phi, x) is False  # grad mode on
    with torch.no_grad():
        assert maml._predicts_directly(phi, x)
        weights_only = {k: v for k, v in phi.items() if "task_" not in k}  # no support statistics: not a served state
        assert not maml._predicts_directly(weights_only, x)
        assert not maml._predicts_directly(phi, x.double())
        anil = build_learner("anil", spec, {"channels": 4})  # its own predict_with (theta's body, phi's head)
        assert not anil._predicts_directly(anil.adapt(torch.rand(5, 1, 28, 28), torch.arange(5)), x)
