"""The `fewshot` command line: the composition root that starts the API, the workers and Redis,
and talks to a running API from a terminal. It may import service, workers, store and models;
nothing imports it (tests/test_import_rules.py)."""
