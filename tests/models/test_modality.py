"""Modalities: specs stored before modalities were named still load; vector standardisation
lives in the spec, not in the weights, so checkpoints keep their tensors."""

from __future__ import annotations

import torch

from models.episodes import ProblemSpec
from models.learners import build_learner
from models.modality import ImageModality, VectorModality


def test_specs_stored_without_a_modality_derive_it_from_their_old_fields():
    omniglot = {"input_shape": [1, 28, 28], "output": "classification", "n_way": 5, "output_dim": 1,
                "image": {"size": 28, "invert": True}}
    assert ProblemSpec.from_json(omniglot).modality == ImageModality(channels=1, size=28, invert=True)
    sine = {"input_shape": [1], "output": "regression", "n_way": 0, "output_dim": 1, "image": None}
    assert ProblemSpec.from_json(sine).modality == VectorModality((1,))
    spec = ProblemSpec.from_json(omniglot)
    assert ProblemSpec.from_json(spec.to_json()) == spec


def test_standardisation_is_in_the_spec_and_raw_units_reach_the_same_outputs():
    x = torch.randn(40, 3) * torch.tensor([1000.0, 1.0, 0.01]) + torch.tensor([5000.0, 0.0, -3.0])
    fitted = VectorModality((3,)).fitted(x)
    assert fitted.public()["modality_params"] == {"features": 3, "standardized": True}
    spec = ProblemSpec.of(fitted, "classification", n_way=2)
    plain = ProblemSpec.of(VectorModality((3,)), "classification", n_way=2)
    torch.manual_seed(0)
    learner = build_learner("protonet", spec, {"hidden": [8]})
    torch.manual_seed(0)
    reference = build_learner("protonet", plain, {"hidden": [8]})
    assert set(learner.state()) == set(reference.state())  # no statistics among the weights
    reference.load_state(learner.state())
    reloaded = build_learner("protonet", ProblemSpec.from_json(spec.to_json()), {"hidden": [8]})
    reloaded.load_state(learner.state())
    y = torch.tensor([0, 1] * 20)
    standardised = (x - x.mean(0)) / x.std(0, unbiased=False)
    raw = reloaded.predict(reloaded.adapt(x, y), x)
    assert torch.allclose(raw, reference.predict(reference.adapt(standardised, y), standardised), atol=1e-4)
