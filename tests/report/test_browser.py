"""The HTML report in a real browser: Debian's Chromium, headless, driven by Playwright, 1400 pixels wide.

CI installs ``chromium`` and sets ``MMUNLEARN_REQUIRE_BROWSER=1``, so there a missing browser fails the
test; elsewhere it is skipped with the reason.
"""

import os
import shutil

import pytest

from mmunlearn.records import aggregate, read_records
from mmunlearn.reporting import write_report

CHROMIUM = os.environ.get("MMUNLEARN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [  # no sandbox as root; no background connections on a closed network
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip
WIDTH = 1400  # a laptop browser window


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
        page = browser.new_page(viewport={"width": WIDTH, "height": 900})
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


# Per results table: its key header cells (name, [key metric,] gap and costs) and the box the table is shown in.
GEOMETRY = """() => {
  const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.right, r.top, r.bottom]; };
  return Array.from(document.querySelectorAll('table.results')).map(t => ({
    table: box(t),
    keys: Array.from(t.querySelectorAll('thead th')).filter((th, i) => i === 0 || th.classList.contains('key'))
      .map(th => [th.textContent, ...box(th)]),
    headline: box(t.closest('section').querySelector('p.headline')),
  }));
}"""


@pytest.mark.slow
@pytest.mark.parametrize("store", ["tiny_store", "wide_store"])
def test_key_columns_are_in_a_1400_pixel_window_without_scrolling(store, request, tmp_path):
    """The name, gap, seconds and share-of-time columns (protection: key recall and costs) need no scrolling."""
    sync_playwright = browser_or_skip()
    files = write_report(request.getfixturevalue(store), tmp_path / "report")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": WIDTH, "height": 900})
        page.goto(files["html"].resolve().as_uri())
        page.wait_for_load_state("load")
        page_width = page.evaluate("document.documentElement.scrollWidth")
        tables = page.evaluate(GEOMETRY)
        shot = tmp_path / "first-screen.png"
        page.screenshot(path=str(shot))  # the first screen, as a reader sees it
        browser.close()
    assert page_width <= WIDTH  # the page itself never scrolls sideways
    assert len(tables) == len(aggregate(read_records(request.getfixturevalue(store), repair=False)))
    for t in tables:
        names = [k[0] for k in t["keys"] if k[0] != "stage"]  # unlearning tables name each method's stage
        assert names[:4] in (["method", "gap to retrain", "seconds", "share of retrain's time"],
                             ["protector", "mean_recall (test)", "protect s", "victim s"])  # fmt: skip
        left, right = t["table"][0], min(t["table"][1], WIDTH)
        for name, x0, x1, _, _ in t["keys"]:
            assert left <= x0 < x1 <= right, f"{name} ({x0:.0f}-{x1:.0f} px) is outside {left:.0f}-{right:.0f} px"
        assert 0 <= t["headline"][0] < t["headline"][1] <= WIDTH
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG") and int.from_bytes(png[16:20], "big") == WIDTH
