"""Classification in a real browser: one French product into the full Google taxonomy, a catalogue batch whose
download carries ``google_product_category``, and the Taxonomies view with an upload refused and one kept."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from playwright.sync_api import Browser, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.e2e.conftest import DashboardServer, goto, screenshot, wait_for_app
from tests.e2e.test_descriptions import DESK, scroll_main_to_top, wait_for_progress
from tests.profiles.classifier import ClassifierResponder
from tests.standin import StandinServer

KETTLE = "Home & Garden > Kitchen & Dining > Kitchen Appliances > Electric Kettles"


def choose(page: Page, key: str, option_name: str) -> None:
    """Pick an option of the Streamlit selectbox whose widget key is ``key``."""
    option = page.get_by_role("option", name=option_name, exact=True)
    for _ in range(3):  # the dropdown may close while a rerun redraws the page; open it again
        page.locator(f".st-key-{key.replace('.', '-')} [role='combobox']").first.click()
        try:
            option.wait_for(timeout=5_000)
            break
        except PlaywrightTimeout:
            continue
    option.click()
    wait_for_app(page)


def classifier(standin: StandinServer) -> None:
    standin.state.apply_profile("classifier")
    standin.state.configure(tokens_per_second=400, parallel=2)
    standin.state.responder = ClassifierResponder(time_scale=0.2)


def catalogue(tmp_path: Path) -> Path:
    path = tmp_path / "catalogue-maison.csv"
    rows = [("MA-001", "Bouilloire électrique inox 1,7 L", "Bouilloire sans fil 2200 W."),
            ("MA-002", "Robe Lina en crêpe de soie", "Robe mi-longue fluide bleu nuit, encolure en V."),
            ("MA-003", "Cordless electric kettle 1.7 L", "Stainless steel kettle, 2200 W."),
            ("MA-004", "SKU 9921-B", ""),
            ("MA-005", "Tente dôme 4 personnes", "Tente de camping imperméable, montage rapide, double toit."),
            ("MA-006", "Casque audio Bluetooth à réduction de bruit", "Casque sans fil, autonomie 30 heures.")]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerow(["Référence", "Nom", "Descriptif"])
        writer.writerows(rows)
    return path


def test_one_product_then_a_catalogue_into_the_google_taxonomy(
        browser: Browser, dashboard: DashboardServer, fresh_standin: StandinServer, tmp_path: Path) -> None:
    classifier(fresh_standin)
    context = browser.new_context(viewport=DESK, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        goto(page, dashboard, "/descriptions")
        choose(page, "studio.single.task", "Classification")
        page.get_by_label("Product name *").fill("Bouilloire électrique inox 1,7 L")
        page.get_by_label("Description").fill("Bouilloire sans fil 2200 W, arrêt automatique, filtre anticalcaire.")
        page.get_by_role("button", name="Generate", exact=True).click()
        expect(page.get_by_text(re.compile(r"^id 751 · depth 4"))).to_be_visible(timeout=30_000)
        wait_for_app(page)
        page.get_by_text("How it was chosen").click()
        wait_for_app(page)
        page.get_by_text("How it was chosen").scroll_into_view_if_needed()
        screenshot(page, "studio-classification-1440x900")

        goto(page, dashboard, "/descriptions?mode=batch")
        page.locator("input[type=file]").set_input_files(str(catalogue(tmp_path)))
        expect(page.get_by_text("6 rows, 3 columns", exact=False)).to_be_visible(timeout=20_000)
        choose(page, "studio.batch.task", "Classification")
        expect(page.get_by_text("Taxonomy", exact=True).first).to_be_visible()
        page.get_by_role("button", name="Run batch").click()
        finished = wait_for_progress(page, r"finished: 6 / 6 rows", timeout_s=90)
        assert "5 done" in finished and "1 failed" in finished, finished
        scroll_main_to_top(page)
        screenshot(page, "studio-classification-batch-1440x900")
        with page.expect_download() as download_info:
            page.get_by_test_id("stDownloadButton").filter(has_text="CSV").get_by_role("button").click()
        text = Path(download_info.value.path()).read_text(encoding="utf-8-sig")
        rows = {r["Référence"]: r for r in csv.DictReader(io.StringIO(text))}
        assert rows["MA-001"]["google_product_category"] == "751" and rows["MA-001"]["ai_result"] == KETTLE
        assert rows["MA-001"]["ai_category_depth"] == "4" and rows["MA-001"]["ai_taxonomy"] == "google@2021-09-21"
        assert rows["MA-004"]["ai_status"] == "failed" and rows["MA-004"]["google_product_category"] == ""
        assert rows["MA-004"]["ai_error"].startswith("not enough information")
    finally:
        context.close()


def test_the_taxonomies_view_refuses_a_bad_file_and_keeps_a_good_one(
        browser: Browser, dashboard: DashboardServer, tmp_path: Path) -> None:
    context = browser.new_context(viewport=DESK)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        goto(page, dashboard, "/descriptions?mode=taxonomies")
        page.get_by_label("Search categories").fill("bouilloire électrique")
        page.keyboard.press("Enter")
        wait_for_app(page)
        bad = tmp_path / "arbre.txt"
        bad.write_text("Maison\nMaison > Cuisine >\nMaison > Salon\nMaison > Salon\nJardin > Outils\n",
                       encoding="utf-8")
        page.get_by_label("Name", exact=True).fill("acme")
        page.locator(".st-key-studio-tax-file input[type=file]").set_input_files(str(bad))
        page.get_by_role("button", name="Check and upload").first.click()
        expect(page.get_by_text(re.compile("The taxonomy was refused: 3 problems"))).to_be_visible()
        screenshot(page, "studio-taxonomies-refused-1440x900")
        good = tmp_path / "arbre.csv"
        good.write_text("id,path\nM,Maison\nMC,Maison > Cuisine\nMS,Maison > Salon\nJ,Jardin\n", encoding="utf-8")
        page.get_by_label("Name", exact=True).fill("acme")
        page.locator(".st-key-studio-tax-file input[type=file]").set_input_files(str(good))
        page.get_by_role("button", name="Check and upload").first.click()
        expect(page.get_by_text(re.compile(r"Kept as acme@v1"))).to_be_visible()
        screenshot(page, "studio-taxonomies-1440x900")
    finally:
        context.close()
