"""The console on a server that needs an API key: it asks for one, keeps it in session storage, and
sends it with every request, the job's event stream included (real Chromium, real `fewshot serve`)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.e2e.api_support import QUICK_SINE, client, served, wait_job
from tests.e2e.browser_support import Watched, launch, wait_points

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    with served(tmp_path_factory.mktemp("console-auth"), redis_db=3, FEWSHOT_REQUIRE_AUTH="true") as s:
        yield s


@pytest.fixture
def watched(serve) -> Iterator[Watched]:
    with sync_playwright() as p:
        browser = launch(p)
        watched = Watched(browser.new_page(viewport={"width": 1366, "height": 768}), f"http://127.0.0.1:{serve.port}")
        yield watched
        browser.close()
    assert watched.outside == [], watched.outside
    assert watched.errors == [], watched.errors


def test_the_console_asks_for_a_key_and_sends_it_everywhere(watched, serve):
    created = subprocess.run([str(Path(sys.executable).parent / "fewshot"), "keys", "create"], env=serve.env,
                             capture_output=True, text=True, check=True)
    key = created.stdout.strip().splitlines()[-1]
    with client(serve, key) as api:
        job = wait_job(api, api.post("/v1/jobs", json={"algorithm": "maml", "dataset": "sinusoid", "config": QUICK_SINE}).json()["id"])
    page = watched.page
    page.goto(f"{watched.origin}/")
    expect(page.locator("#banner")).to_contain_text("needs an API key")
    expect(page.locator("#api-key")).to_be_focused()  # typed into at once, no mouse needed
    # Chromium logs every 4xx answer as a console error: these 401s were the point.
    assert watched.errors and all("status of 401" in e for e in watched.errors), watched.errors
    watched.errors.clear()

    page.keyboard.type(key)
    page.keyboard.press("Enter")
    expect(page.locator(f"a[href='#/jobs/{job['id']}']")).to_be_visible()
    expect(page.locator("#banner")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('fewshot.apiKey')") == key
    page.reload()
    page.click(f"a[href='#/jobs/{job['id']}']")
    expect(page.locator("#job-status")).to_have_text("succeeded")
    assert wait_points(page, "loss", 1) >= 1  # the event stream, read with the key

