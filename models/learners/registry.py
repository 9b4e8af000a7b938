"""Algorithm names to learner classes, and construction from JSON-safe configs."""

from __future__ import annotations

from typing import Any

from models.episodes import ProblemSpec
from models.learners.anil import ANIL
from models.learners.base import Learner, Params
from models.learners.blackbox import BlackBox
from models.learners.finetune import Finetune
from models.learners.maml import FOMAML, MAML
from models.learners.metasgd import MetaSGD
from models.learners.multitask import MultiTaskLearner
from models.learners.protonet import ProtoNet

# One entry per learner class; the API's `algorithm` values are their `algorithm` names.
LEARNER_CLASSES: list[type[Learner]] = [
    MAML,
    FOMAML,
    MetaSGD,
    ANIL,
    ProtoNet,
    Finetune,
    BlackBox,
    MultiTaskLearner,
]
LEARNERS: dict[str, type[Learner]] = {cls.algorithm: cls for cls in LEARNER_CLASSES}


def build_learner(algorithm: str, spec: ProblemSpec, config: Any) -> Learner:
    try:
        cls = LEARNERS[algorithm]
    except KeyError:
        raise ValueError(f"unknown algorithm {algorithm!r}; known: {', '.join(sorted(LEARNERS))}") from None
    if isinstance(config, dict):
        config = cls.config_class(**config)
    return cls(spec, config)


def load_learner(algorithm: str, spec: ProblemSpec, config: dict[str, Any], theta: Params) -> Learner:
    """A stored model: its config as this code reads it (Learner.stored_config), then its weights."""
    cls = LEARNERS.get(algorithm)
    learner = build_learner(algorithm, spec, cls.stored_config(config) if cls else config)
    learner.load_state(theta)
    return learner

