"""The product studio in a real browser: upload a catalogue, run it, reload mid-run, download the result."""

from __future__ import annotations

import csv
import io
import re
import time
from pathlib import Path

from playwright.sync_api import Browser, Locator, Page, expect

from tests.e2e.conftest import DashboardServer, goto, screenshot, wait_for_app
from tests.standin import StandinServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FR_REPLY = "Une robe élégante et fluide, parfaite pour vos soirées."
ROWS = 24


def catalogue(tmp_path: Path) -> Path:
    """The fixture's tricky rows (quoted newline, script tag, formulas) plus plain ones, ``;``-separated."""
    source = list(csv.reader(io.StringIO((FIXTURES / "products.csv").read_text(encoding="utf-8"))))
    header, rows = source[0], source[1:]
    rows += [[f"VL-{i:03d}", "robe", f"Robe {i}", "noir", "soie", "gala", "99.00", f"37{i:011d}"]
             for i in range(len(rows) + 1, ROWS + 1)]
    path = tmp_path / "catalogue-fournisseur.csv"
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        csv.writer(handle, delimiter=";").writerows([header, *rows])
    return path


PROGRESS_LINE = re.compile(r"^(created|running|finished|cancelled): \d+ / \d+ rows")


def progress_text(page: Page) -> str:
    return page.get_by_text(PROGRESS_LINE).first.inner_text()


def results_toggle(page: Page) -> Locator:
    """The card's "Only failed rows" switch; while the card redraws, Streamlit may hold its old copy a moment."""
    return page.get_by_text("Only failed rows").filter(visible=True).first


def wait_for_progress(page: Page, pattern: str, timeout_s: float = 40) -> str:
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        try:
            text = progress_text(page)
        except Exception:  # the card may be redrawing
            text = ""
        if re.search(pattern, text):
            return text
        time.sleep(0.25)
    raise AssertionError(f"progress never matched {pattern!r}; last: {text!r}")


def test_upload_run_reload_mid_run_and_download(page: Page, dashboard: DashboardServer,
                                                fresh_standin: StandinServer, tmp_path: Path) -> None:
    fresh_standin.state.configure(replies={"Product data": FR_REPLY}, parallel=2, request_time_s=0.6)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    goto(page, dashboard, "/descriptions?mode=batch")
    page.locator("input[type=file]").set_input_files(str(catalogue(tmp_path)))
    expect(page.get_by_text("encoding UTF-8 with BOM · separator semicolon")).to_be_visible(timeout=20_000)
    expect(page.get_by_text(f"{ROWS} rows, 8 columns", exact=False)).to_be_visible()
    page.get_by_role("button", name="Run batch").click()

    running = wait_for_progress(page, r"running: [1-9]\d* / 24 rows")
    results_toggle(page).scroll_into_view_if_needed()
    screenshot(page, "descriptions-batch-running")
    assert "ETA" in running

    page.reload()
    wait_for_app(page)
    after_reload = wait_for_progress(page, r"(running|finished): \d+ / 24 rows")
    done_after = int(re.search(r": (\d+) /", after_reload).group(1))  # type: ignore[union-attr]
    done_before = int(re.search(r": (\d+) /", running).group(1))  # type: ignore[union-attr]
    assert done_after >= done_before  # the job kept running on the server through the reload

    wait_for_progress(page, r"finished: 24 / 24 rows · 24 done · 0 failed", timeout_s=60)
    results_toggle(page).scroll_into_view_if_needed()
    screenshot(page, "descriptions-batch-finished")
    with page.expect_download() as download_info:
        page.get_by_test_id("stDownloadButton").filter(has_text="CSV").get_by_role("button").click()
    download = download_info.value
    assert download.suggested_filename == "catalogue-fournisseur-description.csv"
    text = Path(download.path()).read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == ROWS
    assert list(rows[0])[:8] == ["sku", "product_type", "name", "colour", "material", "occasion", "price", "ean"]
    assert all(r["ai_status"] == "done" and r["ai_result"] == FR_REPLY for r in rows)
    assert rows[4]["name"].startswith("'=HYPERLINK(") and rows[4]["ean"] == "'@SUM(A1)"
    assert rows[5]["occasion"] == "anniversaire\net soirée"
    assert len(fresh_standin.state.requests_to("/api/chat")) == ROWS  # each row billed once
    assert fresh_standin.state.max_in_flight <= 2
    # The script tag in a product name stayed text: it never ran (no alert dialog).
    assert dialogs == []


DESK = {"width": 1440, "height": 900}


def scroll_main_to_top(page: Page) -> None:
    """Streamlit scrolls its main area, not the window: bring the top of the page back into view."""
    page.evaluate("document.querySelector('[data-testid=stMain]')?.scrollTo(0, 0)")
    wait_for_app(page)


def small_catalogue(tmp_path: Path, rows: int = 20) -> Path:
    kinds = [("robe", "soie"), ("jupe", "coton"), ("veste", "laine"), ("chemisier", "soie"), ("manteau", "laine")]
    path = tmp_path / "nouveautes-fournisseur.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerow(["Référence", "Type", "Nom", "Couleur", "Matière"])
        for i in range(rows):
            kind, material = kinds[i % len(kinds)]
            writer.writerow([f"NF-{i + 1:03d}", kind, f"{kind.capitalize()} Nova {i + 1}", "noir", material])
    return path


def test_a_new_user_on_small_models_single_product_then_a_first_batch(
        browser: Browser, dashboard: DashboardServer, fresh_standin: StandinServer, tmp_path: Path) -> None:
    """The rough profile at desk size: the first Generate streams its attempt and lands; the first batch runs
    from the top of the page, with repaired rows counted and the downloads saying what was repaired."""
    fresh_standin.state.apply_profile("small_models")
    fresh_standin.state.configure(tokens_per_second=40, parallel=2)
    context = browser.new_context(viewport=DESK, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        goto(page, dashboard, "/descriptions")
        page.get_by_label("Product type *").fill("robe de soirée")
        page.get_by_label("Name").first.fill("Robe Lina")
        page.get_by_label("Colour").fill("bleu nuit")
        page.get_by_label("Material").fill("crêpe de soie")
        page.get_by_role("button", name="Generate", exact=True).click()
        expect(page.get_by_text(re.compile(r"^Attempt 1 of 3"))).to_be_visible()
        screenshot(page, "studio-single-streaming-1440x900")
        expect(page.get_by_text(re.compile(r"attempts? · template description@v2"))).to_be_visible(timeout=30_000)
        expect(page.get_by_text(re.compile(r"Done( after repair)?$")).first).to_be_visible()
        wait_for_app(page)
        page.get_by_text(re.compile(r"attempts? · template description@v2")).scroll_into_view_if_needed()
        screenshot(page, "studio-single-1440x900")
        assert page.get_by_text("No valid output").count() == 0

        goto(page, dashboard, "/descriptions?mode=batch")
        # A file without a product type: named as the form names it, before Run, and Run is disabled.
        page.locator("input[type=file]").set_input_files(str(FIXTURES / "missing_column.csv"))
        expect(page.get_by_text("Map a column to “Product type” (required).")).to_be_visible(timeout=20_000)
        expect(page.get_by_role("button", name="Run batch")).to_be_disabled()
        page.locator("input[type=file]").set_input_files(str(small_catalogue(tmp_path)))
        expect(page.get_by_text("20 rows, 5 columns", exact=False)).to_be_visible(timeout=20_000)
        page.get_by_role("button", name="Run batch").click()
        running = wait_for_progress(page, r"running: \d+ / 20 rows")
        assert "ETA" in running
        expect(page.get_by_role("button", name="Run batch")).to_be_disabled()  # this file is running
        scroll_main_to_top(page)
        screenshot(page, "studio-batch-running-1440x900")
        finished = wait_for_progress(page, r"finished: 20 / 20 rows", timeout_s=90)
        assert re.search(r"· 20 done \(\d+ after repair\) · 0 failed", finished), finished
        scroll_main_to_top(page)
        screenshot(page, "studio-batch-1440x900")
        with page.expect_download() as download_info:
            page.get_by_test_id("stDownloadButton").filter(has_text="CSV").get_by_role("button").click()
        rows = list(csv.DictReader(io.StringIO(Path(download_info.value.path()).read_text(encoding="utf-8-sig"))))
        assert {r["ai_status"] for r in rows} <= {"done", "done after repair"}
        repaired = [r for r in rows if r["ai_status"] == "done after repair"]
        assert repaired and all(r["ai_repairs"] for r in repaired)
        assert len(fresh_standin.state.requests_to("/api/chat")) <= 26  # few retries: about 1.3 requests per row
    finally:
        context.close()
