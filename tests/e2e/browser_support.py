"""Shared by the browser tests (tests/e2e/test_console*.py) and scripts/screenshots: Chromium, watched pages, drops."""

from __future__ import annotations

import base64
import shutil

from playwright.sync_api import Browser, Page, Playwright


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise RuntimeError("the console tests need Debian's chromium: apt-get install chromium (.ci/run does)")
    return path


def launch(p: Playwright) -> Browser:
    """Debian's chromium, headless (Playwright downloads no browser of its own)."""
    return p.chromium.launch(executable_path=chromium_path())


class Watched:
    """A page, with the console errors it logged and the requests it sent outside `origin`."""

    def __init__(self, page: Page, origin: str) -> None:
        self.page, self.origin = page, origin
        self.errors: list[str] = []
        self.outside: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: None if r.url.startswith((origin + "/", "data:", "blob:")) else self.outside.append(r.url))


def drop(page: Page, selector: str, files: list[tuple[str, bytes, str]]) -> None:
    """Drop files on `selector` as a user's drag and drop does (a DataTransfer on a `drop` event)."""
    payload = [{"name": n, "b64": base64.b64encode(b).decode(), "type": t} for n, b, t in files]
    transfer = page.evaluate_handle(
        """files => { const dt = new DataTransfer();
             for (const f of files) { const bin = atob(f.b64); const bytes = new Uint8Array(bin.length);
               for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
               dt.items.add(new File([bytes], f.name, {type: f.type})); }
             return dt; }""", payload)
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def wait_points(page: Page, metric: str, at_least: int) -> int:
    """How many points the metric's chart has, once it has at least `at_least`."""
    count = f"Number(document.querySelector(\"canvas[data-metric='{metric}']\")?.dataset.points || 0)"
    page.wait_for_function(f"{count} >= {at_least}", timeout=30_000)
    return int(page.evaluate(count))
