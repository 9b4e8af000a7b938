"""The HTTP API (FastAPI) and the `fewshot` command line."""
