"""The reports in a real browser: headless Chromium at desktop and phone widths.

Executes the executive, one manager and one rep notebook on the demo data, exports them as the
renderer does (code hidden, images embedded), opens each page at 1280 px and 390 px and checks
what a reader would notice: console errors, sideways scrolling on a phone, empty tiles. The
screenshots land in ``reports/screenshots/`` (git-ignored): look at them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import kpi_lib
from kpi_lib.periods import Period

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "reports" / "screenshots"
REPORTS = [("executive", "all"), ("manager", "emea-ent"), ("rep", "R002")]
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}
MAX_HTML_BYTES = 300_000

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    """``{role: exported HTML file}`` for the three reports of the last complete month."""
    import papermill

    from kpi_lib.metrics.batch import prepare_batch
    from kpi_lib.publish.execute import export_html

    source = ROOT / "data" / "demo.duckdb"
    if not source.exists():
        from kpi_lib.data.demo import write_demo_data

        write_demo_data(source)
    period = kpi_lib.last_complete_month().label
    work = tmp_path_factory.mktemp("browser")
    prepare_batch(str(source), Period.parse(period), out_dir=work / "_data")
    out = {}
    for role, scope_id in REPORTS:
        executed = work / f"{role}.ipynb"
        papermill.execute_notebook(
            str(ROOT / "notebooks" / f"{role}.ipynb"),
            str(executed),
            kernel_name="python3",
            parameters={"period": period, "scope_id": scope_id, "batch_dir": str(work / "_data")},
            cwd=str(ROOT),
            progress_bar=False,
        )
        page = work / f"{role}.html"
        page.write_text(export_html(executed, title=f"{role} {scope_id} {period}", period=period))
        out[role] = page
    return out


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("role", [r for r, _ in REPORTS])
def test_report_reads_well_in_chromium(pages, browser, role, width):
    w, h = WIDTHS[width]
    page = browser.new_page(viewport={"width": w, "height": h})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(pages[role].as_uri())
    page.wait_for_load_state("load")

    assert errors == []
    scroll_width = page.evaluate("document.scrollingElement.scrollWidth")
    assert scroll_width <= page.evaluate("innerWidth"), "the page scrolls sideways"
    values = page.locator(".kr-tile .kr-tile-value").all_inner_texts()
    assert len(values) >= 10 and all(v.strip() for v in values)
    assert sum(v.strip() != "n/a" for v in values) >= len(values) - 3
    images = page.locator("img")
    assert images.count() >= 2
    for i in range(images.count()):
        assert images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0")
        box = images.nth(i).bounding_box()
        assert box["width"] <= w, "an image is wider than the screen"

    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{role}-{width}.png"), full_page=True)
    page.close()


@pytest.mark.parametrize("role", [r for r, _ in REPORTS])
def test_report_page_is_small_and_self_contained(pages, role):
    html = pages[role].read_text()
    assert len(html.encode()) < MAX_HTML_BYTES
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")
    assert "Traceback" not in html and "def " not in html
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(pages[role], SHOTS / f"{role}.html")
