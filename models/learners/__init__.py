"""Learners behind one contract: meta_train_step, adapt, predict, state."""

from models.learners.base import AdaptOptions, AdaptRequest, Learner, Params
from models.learners.registry import LEARNERS, build_learner, load_learner

__all__ = ["LEARNERS", "AdaptOptions", "AdaptRequest", "Learner", "Params", "build_learner", "load_learner"]
