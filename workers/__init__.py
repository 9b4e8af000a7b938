"""Celery workers: meta-training jobs and adaptations, run by plain pipeline functions."""
