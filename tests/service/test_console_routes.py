"""The console's routes in-process: its page at / and /console/, the start-job form's defaults, and
/docs and /redoc pointing at assets the package serves (the browser side: tests/e2e/test_console.py)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from service.main import create_app
from store.settings import Settings
from tests.e2e.api_support import assert_error


def test_console_pages_and_docs_load_only_local_assets(tmp_path):
    settings = Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:6379/3", require_auth=True)
    with TestClient(create_app(settings)) as c:
        for path in ("/", "/console/", "/docs", "/redoc"):  # no key needed: the page asks for one
            page = c.get(path)
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), path
            assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text) + re.findall(r"""(?:url|Url): ?['"]([^'"]+)""", page.text)
            assert assets, path
            for asset in (a for a in assets if not a.startswith("#")):  # in-page links
                assert asset.startswith("/") and not asset.startswith("//"), (path, asset)
                if not asset.startswith("/openapi.json"):
                    assert c.get(asset).status_code == 200, (path, asset)
        assert "fewshot console" in c.get("/").text
        assert_error(c.get("/v1/jobs"), 401, "missing_api_key")


def test_defaults_fill_every_key_of_the_algorithm_and_dataset(tmp_path):
    with TestClient(create_app(Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:6379/3"))) as c:
        body = c.get("/console/defaults", params={"algorithm": "maml", "dataset": "sinusoid"}).json()
        assert "maml" in body["algorithms"] and "omniglot" in body["datasets"]
        assert body["config"]["steps"] == 2000 and body["config"]["k_shot"] == 10  # sinusoid's own default
        assert c.get("/console/defaults", params={"algorithm": "protonet", "dataset": "omniglot"}).json()["config"]["n_way"] == 60
        assert "unknown algorithm" in assert_error(c.get("/console/defaults", params={"algorithm": "nope"}), 422, "invalid_config")["message"]
