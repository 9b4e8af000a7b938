"""Multi-task learning on fixed-seed problems: every conditioning variant learns, sharing pays
when tasks are identical, MMoE gates are distributions, and new tasks adapt from the model.

The regression problem is mtl-synthetic with d = 10 (the paper's generator, smaller input so
that a few hundred steps learn); its baseline is predicting each task's mean, whose MSE is the
variance of the targets (about 6.2).
"""

from __future__ import annotations

import pytest
import torch

from models.learners.base import AdaptOptions
from models.learners.multitask import ADAPT_SEED, MultiTaskConfig, MultiTaskLearner
from models.mtl_synthetic import N_SINES, MtlSyntheticTasks
from models.multitask.evaluation import training_task_metrics
from models.multitask.families import TaskEpisode
from models.multitask.networks import ARCHITECTURES, MMoENet
from models.multitask.weighting import support_stats
from models.recipe import ConfigError, resolve
from models.training import evaluate, meta_train

STEPS = 600


def _family(p: float, k_support: int = 100) -> MtlSyntheticTasks:
    return MtlSyntheticTasks(num_tasks=2, relatedness=p, input_dim=10, examples_per_task=20_000, k_support=k_support, k_query=54, seed=0)


def _train(family: MtlSyntheticTasks, architecture: str, steps: int = STEPS, **overrides) -> MultiTaskLearner:
    torch.manual_seed(0)
    config = MultiTaskConfig(architecture=architecture, task_names=family.task_names, hidden=[32], lr=3e-3, **overrides)  # type: ignore[arg-type]
    learner = MultiTaskLearner(family.spec, config)
    meta_train(learner, family, steps, meta_batch_size=2, seed=0)
    return learner


def _held_out_mse(learner: MultiTaskLearner, family: MtlSyntheticTasks) -> float:
    return training_task_metrics(learner, family, examples=2000, seed=0)["mse_training_tasks"]


@pytest.fixture(scope="module")
def related() -> MtlSyntheticTasks:
    return _family(0.9)


@pytest.fixture(scope="module")
def trained(related) -> dict[str, MultiTaskLearner]:
    return {arch: _train(related, arch) for arch in ARCHITECTURES}


def test_generator_is_the_mmoe_papers():
    family = MtlSyntheticTasks(num_tasks=2, relatedness=0.5, input_dim=100, examples_per_task=50, seed=3)
    w1, w2 = family.weights
    assert torch.allclose(w1.norm(), torch.tensor(1.0)) and torch.allclose(w2.norm(), torch.tensor(1.0))
    assert float(w1 @ w2) == pytest.approx(0.5, abs=1e-5)  # cos(w1, w2) = p
    x, y = family.train_x[1], family.train_y[1]
    proj = x @ w2
    clean = proj + sum(torch.sin(i * proj + i**2) for i in range(1, N_SINES + 1))
    assert (y[:, 0] - clean).std() == pytest.approx(0.01, rel=0.3)  # the N(0, 0.01^2) noise
    again = MtlSyntheticTasks(num_tasks=2, relatedness=0.5, input_dim=100, examples_per_task=50, seed=3)
    assert torch.equal(again.train_y, family.train_y)
    new_w = family.new_task_weight(torch.Generator().manual_seed(0))
    assert float(new_w @ family.u1) == pytest.approx(0.5, abs=1e-5)


def test_training_batches_cover_every_task_and_say_which(related):
    episodes = related.sample("train", 4, torch.Generator().manual_seed(0))
    assert all(isinstance(ep, TaskEpisode) for ep in episodes)
    assert sorted(ep.task for ep in episodes) == [0, 0, 1, 1]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_each_architecture_beats_predicting_the_task_mean(trained, related, architecture):
    baseline = float(related.train_y.var(dim=1).mean())  # MSE of each task's mean, about 6.2
    mse = _held_out_mse(trained[architecture], related)
    assert mse < 0.8 * baseline, f"{architecture}: held-out MSE {mse:.2f}, mean predictor {baseline:.2f}"


@pytest.mark.parametrize(("architecture", "options"), [("concat", {"concat_layer": 1}), ("gating", {})])
def test_one_hot_task_descriptors_condition_as_well(related, architecture, options):
    """z_i one-hot (fixed, not learned); concat joins it to the hidden layer rather than the input."""
    learner = _train(related, architecture, embedding="one-hot", **options)
    baseline = float(related.train_y.var(dim=1).mean())
    assert _held_out_mse(learner, related) < 0.8 * baseline
    assert not any("embeddings" in name for name, _ in learner.net.named_parameters())  # fixed, a buffer


def test_per_task_losses_are_reported_every_step(related):
    learner = MultiTaskLearner(related.spec, MultiTaskConfig(task_names=related.task_names, weighting="uncertainty"))
    metrics = learner.meta_train_step(related.sample("train", 2, torch.Generator().manual_seed(0)))
    for name in ("task_1", "task_2"):
        assert {f"loss/{name}", f"mse/{name}", f"weight/{name}"} <= set(metrics)
    assert {"loss", "mse"} <= set(metrics)


def test_shared_bottom_is_at_least_as_good_as_separate_networks_when_tasks_are_identical():
    identical = _family(1.0)
    shared = _held_out_mse(_train(identical, "multi-head", tower=[8]), identical)
    separate = _held_out_mse(_train(identical, "separate"), identical)
    assert shared <= separate, f"p = 1: shared bottom {shared:.2f} vs separate {separate:.2f}"


def test_mmoe_gates_are_distributions_over_experts(trained, related):
    learner = trained["mmoe"]
    net = learner.net
    assert isinstance(net, MMoENet)
    x = related.held_out(0, 64, torch.Generator().manual_seed(1))[0]
    support = related.sample("test", 1, torch.Generator().manual_seed(2))[0]
    phis = [*learner.training_task_states().values(), learner.adapt(support.support_x, support.support_y)]
    for phi in phis:
        gates = net.gates(phi, x)  # [64, experts]
        assert gates.shape == (64, learner.config.experts)
        assert (gates >= 0).all()
        assert torch.allclose(gates.sum(dim=1), torch.ones(64), atol=1e-5)


@pytest.mark.parametrize("architecture", ["multi-head", "soft-sharing", "mmoe"])
def test_a_new_task_adapted_from_the_model_beats_an_untrained_head(trained, related, architecture):
    learner = trained[architecture]
    adapted = evaluate(learner, related, episodes=10, seed=0).mean
    untrained = evaluate(learner, related, episodes=10, seed=0, options=AdaptOptions(inner_steps=0)).mean
    assert adapted < 0.9 * untrained, f"{architecture}: adapted {adapted:.2f} vs untrained head {untrained:.2f}"


def _adam_fit_as_before(learner: MultiTaskLearner, x: torch.Tensor, y: torch.Tensor, steps: int) -> dict[str, torch.Tensor]:
    """The multi-task learner's own Adam loop, as it was before it used the shared inner loop:
    the reference its numbers must keep (regression with scaled targets, as adapt() scales)."""
    mean, std = support_stats(y, torch.stack([learner.scaler.stats(t)[1] for t in range(learner.num_tasks)]).mean(0))
    y = (y - mean) / std
    start = learner.net.new_task_params(torch.Generator().manual_seed(ADAPT_SEED))
    phi = {k: v.detach().clone() for k, v in start.items()}
    keys = learner.net.adapt_keys(phi)
    for k in keys:
        phi[k].requires_grad_(True)
    optimizer = torch.optim.Adam([phi[k] for k in keys], lr=learner.config.adapt_lr)
    for _ in range(steps):
        loss = learner.loss(learner.net.forward_task(phi, x), y)
        for k, g in zip(keys, torch.autograd.grad(loss, [phi[k] for k in keys]), strict=True):
            phi[k].grad = g
        optimizer.step()
    return {k: v.detach() for k, v in phi.items()}


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_new_task_adaptation_runs_the_shared_inner_loop_with_the_same_numbers(trained, related, architecture):
    """adapt() fits a new task's phi through models.learners.inner.inner_loop (Adam steps); its
    result is bit for bit the hand-written Adam loop the learner had before."""
    learner = trained[architecture]
    episode = related.sample("test", 1, torch.Generator().manual_seed(3))[0]
    steps = 7
    phi = learner.adapt(episode.support_x, episode.support_y, AdaptOptions(inner_steps=steps))
    reference = _adam_fit_as_before(learner, episode.support_x, episode.support_y, steps)
    assert set(reference) <= set(phi)
    for k, v in reference.items():
        assert torch.equal(phi[k], v), f"{architecture}: {k} differs from the reference Adam loop"
    moved = learner.net.adapt_keys(reference)
    start = learner.net.new_task_params(torch.Generator().manual_seed(ADAPT_SEED))
    assert any(not torch.equal(phi[k], start[k]) for k in moved)  # the steps did move phi


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_state_round_trip_serves_the_same_predictions(trained, related, architecture):
    learner = trained[architecture]
    restored = MultiTaskLearner(related.spec, learner.config)
    restored.load_state(learner.state())
    x = related.held_out(1, 8, torch.Generator().manual_seed(0))[0]
    for name, phi in learner.training_task_states().items():
        assert torch.equal(learner.predict(phi, x), restored.predict(phi, x)), name


def test_uncertainty_weighting_learns_a_weight_per_task():
    family = _family(0.5)
    learner = _train(family, "multi-head", steps=200, weighting="uncertainty")
    log_var = learner.weighting.log_var.detach()
    assert (log_var != 0).all()
    metrics = learner.meta_train_step(family.sample("train", 2, torch.Generator().manual_seed(5)))
    assert metrics["weight/task_1"] != pytest.approx(0.5)


def test_target_scaling_keeps_a_large_task_from_drowning_a_small_one():
    """Task 2's targets times 100: unscaled, its loss dominates and task 1 learns less."""
    family = MtlSyntheticTasks(num_tasks=2, relatedness=0.5, input_dim=10, examples_per_task=20_000, seed=0, task_scales=[1.0, 100.0])
    scaled = training_task_metrics(_train(family, "multi-head", steps=300), family, 2000, 0)
    unscaled = training_task_metrics(_train(family, "multi-head", steps=300, scale_targets=False), family, 2000, 0)
    assert scaled["mse/task_1"] < unscaled["mse/task_1"]


def test_multitask_jobs_need_a_dataset_of_named_tasks():
    with pytest.raises(ConfigError) as exc:
        resolve("multitask", "sinusoid", {})
    assert exc.value.param == "dataset"
    recipe = resolve("multitask", "mtl-synthetic", {"num_tasks": 4, "architecture": "mmoe"})
    assert recipe.training.meta_batch_size == 4  # one minibatch of every task per step
    with pytest.raises(ConfigError):
        resolve("multitask", "mtl-synthetic", {"architecture": "transformer"})


def test_mnist_digit_groups_train_as_classification_tasks():
    from pathlib import Path

    from models.mnist import load_mnist
    from models.multitask.mnist_groups import MnistDigitGroups

    images, labels = load_mnist(Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "mnist")
    family = MnistDigitGroups(images, labels, n_way=2, k_support=5, k_query=15, seed=0)
    assert family.task_names == ["digits_0_1", "digits_2_3", "digits_4_5", "digits_6_7", "digits_8_9"]
    torch.manual_seed(0)
    learner = MultiTaskLearner(family.spec, MultiTaskConfig(task_names=family.task_names, hidden=[64], lr=3e-3))
    meta_train(learner, family, steps=150, meta_batch_size=5, seed=0)
    metrics = training_task_metrics(learner, family, examples=400, seed=0)
    assert metrics["accuracy_training_tasks"] > 0.9, metrics  # chance: 0.5
    new_pairs = evaluate(learner, family, episodes=20, seed=0).mean  # pairs never trained together
    assert new_pairs > 0.7, new_pairs


def _uploaded(output: str):
    from models.arrays import ArrayData

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8 * 200, 3, generator=gen)  # 8 tasks of 200 examples
    task = torch.arange(8).repeat_interleave(200)
    slopes = torch.linspace(-2, 2, 8)[task]  # [n]
    if output == "regression":
        return ArrayData(x, (slopes * x[:, 0] + x[:, 1])[:, None], task, "regression")
    # classification: task t tells apart classes 2t and 2t+1 by the sign of its own direction
    y = 2 * task + ((x[:, 0] * slopes + x[:, 2]) > 0).long()
    y[(task == 0) & (x[:, 1] > 1.5)] = 16  # task 0 has a third class: tasks differ in their number of classes
    return ArrayData(x, y, task, "classification", class_names=[f"c{i}" for i in range(17)])


@pytest.mark.parametrize("output", ["regression", "classification"])
def test_an_uploaded_npz_with_a_task_array_trains_one_loss_per_task(output):
    from models.multitask.uploaded import UploadedTasks

    family = UploadedTasks(_uploaded(output), k_support=10, k_query=30, seed=0)
    assert len(family.task_names) >= 2 and family.spec.output == output
    torch.manual_seed(0)
    learner = MultiTaskLearner(family.spec, MultiTaskConfig(task_names=family.task_names, hidden=[32], lr=3e-3))
    metrics = training_task_metrics(learner, family, examples=40, seed=0)
    meta_train(learner, family, steps=300, meta_batch_size=len(family.task_names), seed=0)
    after = training_task_metrics(learner, family, examples=40, seed=0)
    key = "mse_training_tasks" if output == "regression" else "accuracy_training_tasks"
    if output == "regression":
        assert after[key] < 0.2 * metrics[key], (metrics, after)
    else:
        assert after[key] > 0.85, after  # chance: 0.5
        states = learner.training_task_states()
        for index, name in enumerate(family.task_names):  # each answers over its own classes
            assert int(states[name]["num_classes"]) == len(family.task_labels(index))


def test_a_checkpointed_run_resumes_exactly(related):
    from models.checkpoint import capture, restore

    def fresh() -> MultiTaskLearner:
        torch.manual_seed(0)
        return MultiTaskLearner(related.spec, MultiTaskConfig(architecture="mmoe", task_names=related.task_names, weighting="uncertainty"))

    learner, generator = fresh(), torch.Generator().manual_seed(0)
    for _ in range(3):
        learner.meta_train_step(related.sample("train", 2, generator))
    saved = capture(learner, generator, step=3)
    for _ in range(2):
        learner.meta_train_step(related.sample("train", 2, generator))
    resumed = fresh()
    _, generator = restore(resumed, saved.tensors, saved.metadata)
    for _ in range(2):
        resumed.meta_train_step(related.sample("train", 2, generator))
    for key, value in learner.state().items():
        assert torch.equal(value, resumed.state()[key]), key
