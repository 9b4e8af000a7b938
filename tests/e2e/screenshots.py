"""Takes the README's console screenshots (run by scripts/screenshots): a real `fewshot serve`, real jobs."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.e2e.api_support import client, pattern_png, pattern_zip, wait_job
from tests.e2e.browser_support import drop, launch, wait_points
from tests.e2e.server import ServeProcess
from tests.e2e.test_console import BARS, SUPPORT

SINE = {"steps": 4000, "meta_batch_size": 5, "eval_episodes": 20, "checkpoint_every": 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/console"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as data, ServeProcess(Path(data), {}) as serve, client(serve) as api, \
            sync_playwright() as p:
        origin = f"http://127.0.0.1:{serve.port}"
        ds = api.post("/v1/datasets", files={"file": ("bars.zip", pattern_zip(n_classes=12))}).json()
        bars = wait_job(api, api.post("/v1/jobs", json={"algorithm": "protonet", "dataset": ds["id"], "config": BARS}).json()["id"])
        sine = api.post("/v1/jobs", json={"algorithm": "maml", "dataset": "sinusoid", "config": SINE}).json()
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1366, "height": 768})

        page.goto(f"{origin}/#/jobs/{sine['id']}")
        wait_points(page, "loss", 12)
        time.sleep(1)
        page.goto(f"{origin}/#/jobs")
        page.wait_for_selector(f"a[href='#/jobs/{sine['id']}']")
        page.screenshot(path=args.out / "jobs.png")
        page.goto(f"{origin}/#/jobs/{sine['id']}")
        wait_job(api, sine["id"], timeout=300)
        page.wait_for_selector("#job-status >> text=succeeded")
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=args.out / "job-curves.png")

        page.goto(f"{origin}/#/models/{bars['model_id']}")
        for row, (label, cls) in enumerate(SUPPORT.items()):
            page.locator(".support-label").nth(row).fill(label)
            drop(page, f".support-drop[data-row='{row}']", [(f"{label}{v}.png", pattern_png(cls, v), "image/png") for v in range(2)])
        page.click("#adapt")
        page.wait_for_selector("#try-status >> text=ready")
        for cls in SUPPORT.values():
            drop(page, "#query-drop", [("query.png", pattern_png(cls, 2), "image/png")])
        page.wait_for_function("document.querySelectorAll('.prediction').length == 2")
        page.locator("#try").screenshot(path=args.out / "try-a-task.png")
        browser.close()
    print(f"wrote {', '.join(str(p) for p in sorted(args.out.glob('*.png')))}")


if __name__ == "__main__":
    main()
