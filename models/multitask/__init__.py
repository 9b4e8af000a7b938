"""Multi-task learning: task families with named training tasks, task-conditioned networks,
loss weighting and evaluation of a model on its own training tasks."""
