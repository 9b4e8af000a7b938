"""The committed openapi.json is the app's schema; every route is tagged, named and declares its errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from service.openapi_export import openapi_schema, render

ROOT = Path(__file__).resolve().parents[2]
ERROR_REF = "#/components/schemas/ErrorBody"


def _operations(schema: dict) -> list[tuple[str, str, dict]]:
    return [(path, method, op) for path, item in schema["paths"].items() for method, op in item.items()]


def test_committed_schema_matches_the_app():
    committed = (ROOT / "openapi.json").read_text()
    assert committed == render(openapi_schema()), "openapi.json drifted from the app: run scripts/openapi"


def test_every_operation_is_tagged_named_and_declares_its_errors():
    schema = openapi_schema()
    tags = {t["name"] for t in schema["tags"]}
    ids = []
    for path, method, op in _operations(schema):
        assert len(op["tags"]) == 1 and op["tags"][0] in tags, (path, method)
        ids.append(op["operationId"])
        assert "_" in op["operationId"] or op["operationId"] in ("healthz", "readyz"), op["operationId"]
        ok = [s for s in op["responses"] if s.startswith("2")]
        assert len(ok) >= 1, (path, method)
        if path.startswith("/v1/"):
            for status in ("401", "422"):
                assert status in op["responses"], (path, method, status)
            if "{" in path:
                assert "404" in op["responses"], (path, method)
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")) and path.startswith("/v1/"):
                assert response["content"]["application/json"]["schema"]["$ref"] == ERROR_REF, (path, method, status)
    assert len(ids) == len(set(ids))


def test_the_schema_declares_how_api_keys_are_sent():
    """/docs' Authorize: a bearer token or X-API-Key (service.auth.presented_key), optional while no key exists."""
    schema = openapi_schema()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert schema["components"]["securitySchemes"]["apiKey"] == {**schema["components"]["securitySchemes"]["apiKey"],
                                                                  "type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schema["security"] == [{"bearer": []}, {"apiKey": []}, {}]
    for path, method, op in _operations(schema):
        assert ("security" not in op) == path.startswith("/v1/"), (path, method)  # health routes take no key


def test_the_sdk_calls_every_operation():
    """Every /v1 operation is reachable from fewshot_client (the CLI's one client): read from its source."""
    source = "\n".join(p.read_text() for p in (ROOT / "client" / "fewshot_client").glob("*.py"))
    called = {(m.upper(), path) for m, path in re.findall(r'(?:request|stream)\(\s*"(\w+)",\s*f?"(/v1/[^"]*)"', source)}
    called |= {("GET", path) for path in re.findall(r'_get\(\s*f?"(/v1/[^"]*)"', source)}
    for path, method, _ in _operations(openapi_schema()):
        if path.startswith("/v1/"):
            assert (method.upper(), path) in called, f"the SDK (client/fewshot_client) has no call for {method} {path}"


def test_the_sdk_objects_type_every_field_the_api_returns():
    """A field the API adds is a typed attribute of the SDK's object, not only in `raw`."""
    import dataclasses

    from fewshot_client import Checkpoint, Dataset, Job, JobEvent, Model, Predictions, Task

    schemas = openapi_schema()["components"]["schemas"]
    for cls in (Job, JobEvent, Checkpoint, Dataset, Model, Task, Predictions):
        returned = set(schemas[f"{cls.__name__}Public"]["properties"]) - {"object"}
        missing = returned - {f.name for f in dataclasses.fields(cls)}
        assert not missing, f"fewshot_client.{cls.__name__} drops {sorted(missing)}"


def test_the_sdk_parses_objects_from_a_server_without_the_newer_fields():
    from fewshot_client import Dataset, Model, Predictions, Task

    client: Any = object()
    model = Model.parse({"id": "mdl_a", "job_id": "job_a", "algorithm": "maml", "dataset": "sinusoid",
                         "input_shape": [1], "output": "regression", "config": {}, "created_at": "2026-01-01T00:00:00"},
                        client)
    assert (model.modality, model.modality_params, model.max_classes) == (None, {}, None)
    dataset = Dataset.parse({"id": "sinusoid", "name": "sinusoid", "builtin": True, "format": "builtin",
                             "output": "regression"})
    assert (dataset.modality, dataset.modality_params) == (None, None)
    task = Task.parse({"id": "tsk_a", "model_id": "mdl_a", "status": "ready", "support_size": 3,
                       "created_at": "2026-01-01T00:00:00"}, client)
    assert task.conversions == [] and Predictions.parse({"task_id": "tsk_a", "predictions": [0.5]}).conversions == []
