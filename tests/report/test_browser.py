"""The HTML report in a real browser: Debian's Chromium, headless, driven by Playwright.

CI installs ``chromium`` and sets ``MMUNLEARN_REQUIRE_BROWSER=1``, so there a missing browser fails the
test; elsewhere it is skipped with the reason.
"""

import os
import shutil

import pytest

from mmunlearn.reporting import write_report

CHROMIUM = os.environ.get("MMUNLEARN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [  # no sandbox as root; no background connections on a closed network
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip


def browser_or_skip():
    missing = []
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("the playwright package")
        sync_playwright = None
    if not os.path.exists(CHROMIUM):
        missing.append(f"Chromium at {CHROMIUM}")
    if missing:
        reason = f"no {' and '.join(missing)} (apt-get install chromium; pip install playwright)"
        if os.environ.get("MMUNLEARN_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return sync_playwright


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tiny_store, tmp_path):
    sync_playwright = browser_or_skip()
    files = write_report(tiny_store, tmp_path / "report", command="mmunlearn report x")
    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("request", lambda r: None if r.url.startswith(("file:", "data:")) else problems.append(r.url))
        page.goto(files["html"].resolve().as_uri())
        page.wait_for_load_state("load")
        title = page.title()
        tables = page.locator("table").count()
        rows = page.locator("tbody tr").count()
        sizes = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
        shot = tmp_path / "screenshot.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert title == "mmunlearn benchmark report"
    assert tables >= 4 and rows >= 10
    assert len(sizes) == len(list(files["figures"].iterdir())) >= 4
    assert all(done and w > 200 and h > 100 for done, w, h in sizes)  # every image decoded
    assert problems == []  # no console errors, no page errors, no network requests
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 20_000
