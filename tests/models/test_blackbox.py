"""Black-box learners (mann, attention): learning, stored states, query independence, refusals."""

from __future__ import annotations

import pytest
import torch

from models.episodes import Episode, ProblemSpec, Split
from models.learners import build_learner, load_learner
from models.learners.blackbox import BlackBox, BlackBoxConfig, SupportNormConv4
from models.nets import Conv4
from models.training import evaluate, meta_train
from store.artifacts import ArtifactStore

ARCHITECTURES = ["mann", "attention"]
IMAGE_SPEC = ProblemSpec((1, 28, 28), "classification", n_way=5)
VECTOR_SPEC = ProblemSpec((8,), "classification", n_way=5)


class GaussianClusters:
    """Synthetic N-way K-shot tasks: each task draws N class centres in R^dim; examples are a
    centre plus noise. Nothing about a class carries over between tasks, so only reading
    the support set can beat chance."""

    def __init__(
        self, n_way: int, k_shot: int, k_query: int, dim: int = 8, noise: float = 0.3, distractors: int = 0
    ) -> None:
        self.n_way, self.k_shot, self.k_query, self.dim, self.noise = n_way, k_shot, k_query, dim, noise
        self.distractors = distractors  # the last inputs: wide noise that carries no class (a learner learns to ignore it)

    @property
    def spec(self) -> ProblemSpec:
        return ProblemSpec((self.dim,), "classification", n_way=self.n_way)

    def sample(self, split: Split, n_tasks: int, generator: torch.Generator) -> list[Episode]:
        return [self._episode(generator) for _ in range(n_tasks)]

    def _episode(self, g: torch.Generator) -> Episode:
        centres = torch.randn(self.n_way, self.dim, generator=g)  # [N, dim]
        sy = torch.arange(self.n_way).repeat_interleave(self.k_shot)
        qy = torch.arange(self.n_way).repeat_interleave(self.k_query)
        sx = centres[sy] + self.noise * torch.randn(len(sy), self.dim, generator=g)
        qx = centres[qy] + self.noise * torch.randn(len(qy), self.dim, generator=g)
        if self.distractors:
            sx[:, -self.distractors :] = 3 * torch.randn(len(sy), self.distractors, generator=g)
            qx[:, -self.distractors :] = 3 * torch.randn(len(qy), self.distractors, generator=g)
        return Episode(sx, sy, qx, qy)


@pytest.mark.parametrize(("architecture", "steps"), [("mann", 500), ("attention", 400)])
def test_black_box_learners_beat_chance_after_short_meta_training(architecture, steps):
    tasks = GaussianClusters(n_way=3, k_shot=1, k_query=5)
    torch.manual_seed(0)
    learner = BlackBox(tasks.spec, BlackBoxConfig(architecture=architecture, width=64, meta_lr=3e-3 if architecture == "mann" else 1e-3))
    losses: list[float] = []
    meta_train(learner, tasks, steps, meta_batch_size=16, seed=0, on_step=lambda s, t, m: losses.append(m["loss"]))
    result = evaluate(learner, tasks, episodes=100, seed=0)
    assert sum(losses[-50:]) < 0.8 * sum(losses[:50])  # meta-training loss falls
    assert result.mean > 1 / 3 + 0.2, result  # chance is 1/3 on 3-way tasks


def test_attention_trained_three_way_serves_ten_way_tasks():
    """The default readout ("summaries") has no slot per label: trained on 2- and 3-way tasks, it
    reads 10-way tasks, and meta-training is what makes it good at them (half the inputs are
    distractors that only meta-training learns to ignore)."""
    train, serve = (GaussianClusters(n_way=n, k_shot=1, k_query=5, dim=8, distractors=4) for n in (3, 10))
    torch.manual_seed(0)
    learner = BlackBox(train.spec, BlackBoxConfig(architecture="attention", width=64, meta_lr=1e-3))
    assert learner.max_classes == 1000
    before = evaluate(learner, serve, episodes=100, seed=1)
    meta_train(learner, train, 300, meta_batch_size=16, seed=0)
    after = evaluate(learner, serve, episodes=100, seed=1)
    assert after.mean > 0.1 + 0.5, after  # chance is 1/10
    assert after.mean > before.mean + 0.15, (before, after)


def test_attention_summaries_do_not_depend_on_the_numbers_of_the_labels():
    learner = _learner("attention", VECTOR_SPEC)
    ep = _episode(VECTOR_SPEC, n_classes=7)  # more classes than the 5 it was built for
    relabel = torch.tensor([3, 0, 6, 1, 5, 2, 4])
    logits = learner.predict(learner.adapt(ep.support_x, ep.support_y), ep.query_x)
    relabelled = learner.predict(learner.adapt(ep.support_x, relabel[ep.support_y]), ep.query_x)
    torch.testing.assert_close(relabelled[:, relabel], logits, rtol=0, atol=1e-5)


def test_attention_models_stored_before_the_readout_key_load_with_label_slots():
    config = {"architecture": "attention", "channels": 8, "width": 32, "hidden": [16]}
    torch.manual_seed(0)
    old = build_learner("blackbox", VECTOR_SPEC, {**config, "attention_readout": "label_slots"})
    stored = {k: v for k, v in BlackBoxConfig(**config).to_json().items() if k != "attention_readout"}  # as stored then
    loaded = load_learner("blackbox", VECTOR_SPEC, stored, old.state())
    assert loaded.config.attention_readout == "label_slots" and loaded.max_classes == 5
    ep = _episode(VECTOR_SPEC, n_classes=3)
    torch.testing.assert_close(loaded.predict(loaded.adapt(ep.support_x, ep.support_y), ep.query_x),
                               old.predict(old.adapt(ep.support_x, ep.support_y), ep.query_x), rtol=0, atol=0)


def _episode(spec: ProblemSpec, n_classes: int, k_shot: int = 2, n_query: int = 7, seed: int = 0) -> Episode:
    g = torch.Generator().manual_seed(seed)
    sy = torch.arange(n_classes).repeat_interleave(k_shot)
    sx = torch.rand(len(sy), *spec.input_shape, generator=g)
    qx = torch.rand(n_query, *spec.input_shape, generator=g)
    return Episode(sx, sy, qx, torch.zeros(n_query, dtype=torch.int64))


def _learner(architecture: str, spec: ProblemSpec, **config: object) -> BlackBox:
    torch.manual_seed(0)
    return BlackBox(spec, BlackBoxConfig(architecture=architecture, channels=8, width=32, hidden=[16], **config))


@pytest.mark.parametrize("spec", [IMAGE_SPEC, VECTOR_SPEC], ids=["images", "vectors"])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_stored_state_predicts_what_rereading_the_support_set_predicts(architecture, spec, tmp_path):
    learner = _learner(architecture, spec)
    ep = _episode(spec, n_classes=3)
    phi = learner.adapt(ep.support_x, ep.support_y)
    ArtifactStore(tmp_path).save("tasks/t/state.safetensors", phi)
    stored = ArtifactStore(tmp_path).load("tasks/t/state.safetensors")
    with torch.no_grad():  # read the support set and the queries in one pass, as meta-training does
        reread = learner._readout(learner._summarize(ep.support_x[None], ep.support_y[None], 3), ep.query_x[None], 3)[0]
    predicted = learner.predict(stored, ep.query_x)
    assert predicted.shape == (len(ep.query_x), 3)  # logits for the task's 3 classes, not n_way
    torch.testing.assert_close(predicted, reread, rtol=0, atol=1e-6)


@pytest.mark.parametrize("spec", [IMAGE_SPEC, VECTOR_SPEC], ids=["images", "vectors"])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_queries_never_influence_one_another(architecture, spec):
    learner = _learner(architecture, spec)
    ep = _episode(spec, n_classes=5, n_query=9)
    phi = learner.adapt(ep.support_x, ep.support_y)
    together = learner.predict(phi, ep.query_x)
    order = torch.randperm(len(ep.query_x), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(learner.predict(phi, ep.query_x[order]), together[order], rtol=0, atol=1e-6)
    alone = torch.cat([learner.predict(phi, ep.query_x[i : i + 1]) for i in range(len(ep.query_x))])
    # the convolutions' float rounding depends on the batch's size: logits (attention's are distances, ~10) agree
    # to float32's relative precision, probabilities within 1e-5
    torch.testing.assert_close(alone, together, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(alone.softmax(-1), together.softmax(-1), rtol=0, atol=1e-5)


def test_attention_state_does_not_depend_on_the_order_of_the_support_set():
    learner = _learner("attention", VECTOR_SPEC)
    ep = _episode(VECTOR_SPEC, n_classes=4)
    order = torch.randperm(len(ep.support_x), generator=torch.Generator().manual_seed(2))
    a = learner.predict(learner.adapt(ep.support_x, ep.support_y), ep.query_x)
    b = learner.predict(learner.adapt(ep.support_x[order], ep.support_y[order]), ep.query_x)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_support_pass_is_conv4_embed_with_the_support_statistics():
    torch.manual_seed(0)
    embedding = SupportNormConv4(1, 28, channels=8)
    reference = Conv4(1, 28, out_dim=1, channels=8)
    reference.load_state_dict(embedding.conv4.state_dict(), strict=False)
    x = torch.rand(6, 1, 28, 28)
    e, stats = embedding(x[None])
    torch.testing.assert_close(e[0], reference.embed(x), rtol=1e-5, atol=1e-6)
    assert stats["norm.0.mean"].shape == (1, 8)


@pytest.mark.parametrize(("architecture", "readout"), [("mann", "summaries"), ("attention", "summaries"), ("attention", "label_slots")])
def test_wrong_shapes_and_too_many_classes_are_refused_with_a_reason(architecture, readout):
    learner = _learner(architecture, VECTOR_SPEC, attention_readout=readout)
    ep = _episode(VECTOR_SPEC, n_classes=3)
    limit = 1000 if (architecture, readout) == ("attention", "summaries") else 5  # mann has label slots whatever the key
    assert learner.max_classes == limit
    with pytest.raises(ValueError, match=f"at most {limit}"):
        learner.adapt(torch.rand(limit + 1, 8), torch.arange(limit + 1))
    with pytest.raises(ValueError, match=r"shape \(7,\)"):
        learner.adapt(torch.rand(6, 7), ep.support_y)
    phi = learner.adapt(ep.support_x, ep.support_y)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        learner.predict(phi, torch.rand(2, 4))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_regression_reads_targets_and_theta_round_trips(architecture):
    spec = ProblemSpec((1,), "regression", output_dim=1)
    learner = build_learner("blackbox", spec, {"architecture": architecture, "width": 32, "hidden": [16]})
    x = torch.linspace(-3, 3, 10)[:, None]
    phi = learner.adapt(x, torch.sin(x))
    assert all(not v.requires_grad for v in phi.values())
    out = learner.predict(phi, x)
    assert out.shape == (10, 1)
    clone = build_learner("blackbox", spec, {"architecture": architecture, "width": 32, "hidden": [16]})
    clone.load_state(learner.state())
    torch.testing.assert_close(clone.predict(clone.adapt(x, torch.sin(x)), x), out, rtol=0, atol=0)


def test_unknown_architecture_is_refused():
    with pytest.raises(ValueError, match="architecture must be one of 'mann', 'attention'"):
        BlackBoxConfig(architecture="ntm")  # type: ignore[arg-type]
