"""An adapted state with a non-finite value anywhere is refused, and the error names where."""

from __future__ import annotations

import pytest
import torch

from models.episodes import ProblemSpec
from models.learners import build_learner
from models.learners.base import AdaptationDiverged
from workers.pipelines import all_finite, check_adapted


def _state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "features.0.conv.weight": torch.randn(8, 1, 3, 3, generator=g),
        "features.0.norm.task_mean": torch.randn(8, generator=g),
        "head.bias": torch.randn(5, generator=g).double(),
        "steps": torch.arange(3),  # not floating point: never non-finite
        "empty": torch.zeros(0),
    }


def test_all_finite_finds_a_nan_or_an_infinity_in_any_tensor():
    assert all_finite(_state()) and all_finite({}) and all_finite({"n": torch.arange(2)})
    for key in ("features.0.conv.weight", "features.0.norm.task_mean", "head.bias"):
        for bad in (float("nan"), float("inf"), float("-inf")):
            state = _state()
            state[key].view(-1)[-1] = bad
            assert not all_finite(state), (key, bad)
    huge = _state()
    huge["head.bias"][0] = 1e300  # finite however large (float64)
    assert all_finite(huge)


def test_check_adapted_names_the_non_finite_tensors():
    learner = build_learner("maml", ProblemSpec(input_shape=(1,), output="regression"), {})
    state = _state()
    check_adapted(learner, state, torch.zeros(2, 1), torch.zeros(2, 1))
    state["head.bias"][2] = float("nan")
    with pytest.raises(AdaptationDiverged, match=r"non-finite values in head\.bias; try a smaller inner_lr"):
        check_adapted(learner, state, torch.zeros(2, 1), torch.zeros(2, 1))
