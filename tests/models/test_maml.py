"""MAML against references: learning on sinusoids, meta-gradients against finite differences."""

from __future__ import annotations

import torch
from torch.func import functional_call

from models.episodes import Episode, ProblemSpec
from models.learners import AdaptOptions, build_learner
from models.learners.inner import inner_loop
from models.learners.maml import MAML, MAMLConfig
from models.nets import BatchNorm, batch_norm_from_primitives
from models.recipe import DataSources, build_tasks, resolve
from models.training import evaluate, meta_train


def test_maml_learns_sinusoids_far_below_the_unadapted_model(tmp_path):
    recipe = resolve("maml", "sinusoid", {"steps": 600, "meta_batch_size": 10, "meta_lr": 0.003, "adapt_steps": 10})
    tasks = build_tasks(recipe, DataSources(tmp_path))
    learner = build_learner("maml", tasks.spec, recipe.learner)
    losses: list[float] = []
    meta_train(learner, tasks, 600, 10, seed=0, on_step=lambda s, t, m: losses.append(m["loss"]))
    adapted = evaluate(learner, tasks, episodes=100, seed=0)
    unadapted = evaluate(learner, tasks, episodes=100, seed=0, options=AdaptOptions(inner_steps=0))
    assert sum(losses[-100:]) / 100 < 0.7 * sum(losses[:100]) / 100  # meta-training loss falls
    assert adapted.mean < 0.5 * unadapted.mean, (adapted, unadapted)  # adaptation helps, clearly


def _tiny_maml(first_order: bool, steps: int = 2) -> tuple[MAML, Episode]:
    torch.manual_seed(0)
    spec = ProblemSpec(input_shape=(3,), output="regression", output_dim=1)
    learner = MAML(spec, MAMLConfig(inner_steps=steps, inner_lr=0.1, hidden=[4], first_order=first_order))
    learner.net.double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64)
    y = torch.randn(6, 1, generator=g, dtype=torch.float64)
    return learner, Episode(x[:3], y[:3], x[3:], y[3:])


def _query_loss(learner: MAML, ep: Episode, theta: dict[str, torch.Tensor], steps: int) -> torch.Tensor:
    def fwd(p, x):
        return functional_call(learner.net, p, (x,))

    fast = inner_loop(fwd, theta, ep.support_x, ep.support_y, learner.loss, steps, 0.1, create_graph=True)
    return learner.loss(fwd(fast, ep.query_x), ep.query_y)


def _meta_gradient(learner: MAML, ep: Episode) -> dict[str, torch.Tensor]:
    learner.optimizer.zero_grad()
    lr_backup = [g["lr"] for g in learner.optimizer.param_groups]
    for group in learner.optimizer.param_groups:
        group["lr"] = 0.0  # read the gradient without moving theta
    learner.meta_train_step([ep])
    for group, lr in zip(learner.optimizer.param_groups, lr_backup, strict=True):
        group["lr"] = lr
    return {k: p.grad.clone() for k, p in learner.net.named_parameters()}


def test_second_order_meta_gradient_matches_finite_differences():
    learner, ep = _tiny_maml(first_order=False)
    grads = _meta_gradient(learner, ep)
    theta = {k: p.detach().clone() for k, p in learner.net.named_parameters()}
    eps = 1e-6
    for key, value in theta.items():
        flat = value.view(-1)
        for i in range(min(flat.numel(), 4)):
            plus = {k: v.clone() for k, v in theta.items()}
            minus = {k: v.clone() for k, v in theta.items()}
            plus[key].view(-1)[i] += eps
            minus[key].view(-1)[i] -= eps
            numeric = (_query_loss(learner, ep, plus, 2) - _query_loss(learner, ep, minus, 2)) / (2 * eps)
            assert torch.allclose(grads[key].view(-1)[i], numeric, rtol=1e-5, atol=1e-8), (key, i)


def test_first_order_meta_gradient_drops_the_second_order_terms():
    exact, ep = _tiny_maml(first_order=False)
    approx, _ = _tiny_maml(first_order=True)
    g_exact, g_approx = _meta_gradient(exact, ep), _meta_gradient(approx, ep)
    # FOMAML's gradient is the query gradient at the adapted weights: close, but not equal.
    diff = max(float((g_exact[k] - g_approx[k]).abs().max()) for k in g_exact)
    assert diff > 1e-6
    # With zero inner steps the two coincide exactly.
    exact0, ep0 = _tiny_maml(first_order=False, steps=0)
    approx0, _ = _tiny_maml(first_order=True, steps=0)
    g0, g1 = _meta_gradient(exact0, ep0), _meta_gradient(approx0, ep0)
    assert all(torch.allclose(g0[k], g1[k]) for k in g0)


def test_adapted_state_round_trips_through_safetensors(tmp_path):
    from store.artifacts import ArtifactStore

    learner, ep = _tiny_maml(first_order=False)
    learner.net.float()
    x, y = ep.support_x.float(), ep.support_y.float()
    phi = learner.adapt(x, y)
    store = ArtifactStore(tmp_path)
    store.save("tasks/t/state.safetensors", phi)
    loaded = store.load("tasks/t/state.safetensors")
    assert torch.equal(learner.predict(phi, ep.query_x.float()), learner.predict(loaded, ep.query_x.float()))


def test_adaptation_builds_no_graph_and_leaves_theta_alone():
    learner, ep = _tiny_maml(first_order=False)
    before = {k: v.clone() for k, v in learner.state().items()}
    phi = learner.adapt(ep.support_x, ep.support_y)
    assert all(not v.requires_grad for v in phi.values())
    assert all(torch.equal(before[k], v) for k, v in learner.state().items())


def test_fused_batch_norm_matches_the_primitive_ops_to_second_order():
    """BatchNorm runs the fused F.batch_norm kernel eagerly; MAML differentiates through its
    gradient, so its first and second derivatives must equal those of the plain maths."""
    torch.manual_seed(0)
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    norm = BatchNorm(3).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    target = torch.randn(5, 3, 4, 4, dtype=torch.float64)

    def derivatives(fn):  # type: ignore[no-untyped-def]
        inputs = (x, norm.weight, norm.bias)
        loss = (fn(x) * target).pow(2).sum()
        first = torch.autograd.grad(loss, inputs, create_graph=True)
        second = torch.autograd.grad(sum((g * g).sum() for g in first), inputs)
        return [*first, *second]

    fused = derivatives(norm)
    reference = derivatives(lambda v: batch_norm_from_primitives(v, norm.weight, norm.bias, norm.eps))
    for a, b in zip(fused, reference, strict=True):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)
