"""The web console in a real headless Chromium (Debian's `chromium`, driven by Playwright) against a real `fewshot serve`.

Every test checks that the page made no request outside the server and logged no console error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from tests.e2e.api_support import assert_error, client, pattern_png, pattern_zip, served, wait_job
from tests.e2e.browser_support import Watched, drop, launch, wait_points
from tests.e2e.server import ServeProcess

pytestmark = pytest.mark.e2e

LONG_SINE = {"steps": 100_000, "meta_batch_size": 2, "eval_episodes": 5, "checkpoint_every": 0}
# A tiny Conv4 prototypical network on bars at class-specific places: its embedding separates them at once.
BARS = {"steps": 10, "n_way": 2, "k_shot": 1, "k_query": 2, "meta_batch_size": 2, "eval_episodes": 5, "channels": 8,
        "checkpoint_every": 0}
SUPPORT = {"a": 1, "b": 9}  # label in the console -> class of pattern_png (bars far apart)


@pytest.fixture(scope="module")
def serve(tmp_path_factory) -> Iterator[ServeProcess]:
    with served(tmp_path_factory.mktemp("console"), redis_db=2) as s:
        yield s


@pytest.fixture(scope="module")
def api(serve) -> Iterator[httpx.Client]:
    with client(serve) as c:
        yield c


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        yield launch(p)


@pytest.fixture
def watched(browser, serve) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    watched = Watched(context.new_page(), f"http://127.0.0.1:{serve.port}")
    yield watched
    context.close()
    assert watched.outside == [], watched.outside
    assert watched.errors == [], watched.errors


def test_jobs_page_lists_a_job_and_its_curve_grows_while_it_trains(watched, api, serve):
    page = watched.page
    job = api.post("/v1/jobs", json={"algorithm": "maml", "dataset": "sinusoid", "config": LONG_SINE}).json()
    page.goto(f"{watched.origin}/")
    row = page.locator("tr", has=page.locator(f"a[href='#/jobs/{job['id']}']"))
    expect(row).to_be_visible()
    wait_job(api, job["id"], until=("running",))
    page.click(f"a[href='#/jobs/{job['id']}']")
    before = wait_points(page, "loss", 2)
    wait_points(page, "loss", before + 2)
    assert api.get(f"/v1/jobs/{job['id']}").json()["status"] == "running"  # the points came while it trained
    expect(page.locator("#job-status")).to_have_text("running")

    page.click("#cancel")  # keyboard-reachable button; the job stops at its next report
    expect(page.locator("#job-status")).to_have_text("cancelled", timeout=30_000)
    assert wait_job(api, job["id"])["status"] == "cancelled"

    page.goto(f"{watched.origin}/console/#/jobs")  # the same console under /console/
    expect(page.locator(f"a[href='#/jobs/{job['id']}']")).to_be_visible()
    page.set_viewport_size({"width": 400, "height": 800})  # a narrow window: nothing wider than it
    assert page.evaluate("document.documentElement.scrollWidth") <= 400


def test_an_upload_shows_the_servers_error_next_to_the_file(watched, api):
    page = watched.page
    page.goto(f"{watched.origin}/#/datasets")
    expect(page.locator("table")).to_contain_text("omniglot")  # the built-ins
    broken = b"PK\x03\x04 this is not a zip archive"
    message = assert_error(api.post("/v1/datasets", files={"file": ("broken.zip", broken)}), 422)["message"]
    drop(page, "#dataset-drop", [("broken.zip", broken, "application/zip"), ("shapes.zip", pattern_zip(), "application/zip")])
    broken_row = page.locator("#uploads li", has_text="broken.zip")
    expect(broken_row.locator(".error")).to_contain_text(message)
    expect(page.locator("#uploads li", has_text="shapes.zip")).to_contain_text("uploaded as ds_")
    expect(page.locator("table")).to_contain_text("shapes.zip")  # the list shows the new upload
    # Chromium logs every 4xx answer as a console error: this one was asked for.
    assert all("status of 422" in e for e in watched.errors), watched.errors
    watched.errors.clear()


def test_a_task_adapted_from_dropped_images_predicts_their_labels(watched, api):
    page = watched.page
    ds = api.post("/v1/datasets", files={"file": ("bars.zip", pattern_zip(n_classes=12))}).json()
    job = wait_job(api, api.post("/v1/jobs", json={"algorithm": "protonet", "dataset": ds["id"], "config": BARS}).json()["id"])
    assert job["status"] == "succeeded", job
    page.goto(f"{watched.origin}/#/models/{job['model_id']}")
    expect(page.locator("#metrics")).to_contain_text("accuracy")
    expect(page.locator("#metrics")).to_contain_text("95% CI")
    for row, (label, cls) in enumerate(SUPPORT.items()):
        page.locator(".support-label").nth(row).fill(label)
        drop(page, f".support-drop[data-row='{row}']",
             [(f"{label}{v}.png", pattern_png(cls, v), "image/png") for v in range(2)])
        expect(page.locator(f".support-drop[data-row='{row}'] img")).to_have_count(2)
    page.click("#adapt")
    expect(page.locator("#try-status")).to_contain_text("ready")
    for label, cls in SUPPORT.items():
        drop(page, "#query-drop", [(f"query-{label}.png", pattern_png(cls, 2), "image/png")])
        expect(page.locator(".prediction").first.locator(".predicted")).to_have_text(label)
    expect(page.locator(".prediction").first.locator(".bar")).to_have_count(2)  # a probability per label

    pad = page.locator("#pad").bounding_box()
    page.mouse.move(pad["x"] + 40, pad["y"] + 100)
    page.mouse.down()
    page.mouse.move(pad["x"] + 160, pad["y"] + 100, steps=8)
    page.mouse.up()
    page.click("#predict-drawing")
    expect(page.locator(".prediction")).to_have_count(3)
    assert "/predictions" in page.locator("#try-curl").text_content()
    expect(page.locator("#tasks")).to_contain_text("No tasks yet")  # loaded before the adaptation
    page.set_viewport_size({"width": 400, "height": 800})  # a narrow window: nothing wider than it
    assert page.evaluate("document.documentElement.scrollWidth") <= 400


def test_the_start_job_form_shows_defaults_and_starts_a_job(watched, api):
    page = watched.page
    page.goto(f"{watched.origin}/#/jobs/new")
    page.select_option("#algorithm", "maml")
    page.select_option("#dataset", "sinusoid")
    expect(page.locator("#cfg-k_shot")).to_have_value("10")  # sinusoid's own default, filled in
    page.fill("#cfg-steps", "0")
    page.keyboard.press("Enter")
    expect(page.locator("form [role=status]")).to_contain_text("steps must be between 1 and")  # the server's 422
    assert all("status of 422" in e for e in watched.errors), watched.errors
    watched.errors.clear()
    page.fill("#cfg-steps", "20")
    page.fill("#cfg-eval_episodes", "5")
    page.get_by_role("button", name="Start job").click()
    page.wait_for_url(re.compile(r".*#/jobs/job_[A-Za-z0-9]+$"))
    job = wait_job(api, page.url.rsplit("/", 1)[1])
    assert job["status"] == "succeeded" and job["config"]["steps"] == 20 and job["config"]["k_shot"] == 10, job
    expect(page.locator("#job-status")).to_have_text("succeeded")


def test_docs_and_redoc_work_offline_and_declare_the_key_schemes(watched, api):
    schemes = api.get("/openapi.json").json()["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKey"]["name"] == "X-API-Key"
    page = watched.page
    page.goto(f"{watched.origin}/docs")
    expect(page.locator(".swagger-ui .btn.authorize")).to_be_visible()
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    page.goto(f"{watched.origin}/redoc")
    expect(page.locator("h1", has_text="fewshot")).to_be_visible()
