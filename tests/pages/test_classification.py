"""Classification on the product studio page (AppTest, the loopback stand-in's ``classifier`` profile): the
taxonomy chosen per task, the path with its id and depth, translated labels, a company taxonomy, the
Taxonomies view, and "not enough information" for a product that is only a code."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from streamlit.testing.v1 import AppTest

from services.studio.taxonomy_store import DEFAULT_REF, TaxonomyStore
from tests.pages.test_descriptions import assert_no_html
from tests.pages.test_descriptions import page_text as escaped_text
from tests.profiles.classifier import ClassifierResponder
from tests.standin import StandinServer

PAGE = "pages/descriptions.py"
KETTLE_PATH = "Home & Garden > Kitchen & Dining > Kitchen Appliances > Electric Kettles"


def page_text(at: AppTest) -> str:
    """The page's text with Markdown's escapes taken off (labels are escaped so they stay text)."""
    return escaped_text(at).replace("\\", "") + "\n".join(w.value for w in at.warning)


def classifier(standin: StandinServer) -> None:
    standin.state.apply_profile("classifier")
    standin.state.configure(tokens_per_second=20_000)
    standin.state.responder = ClassifierResponder(time_scale=0.0, odds_scale=0.0)


def data_dir() -> Path:
    return Path(os.environ["DASHBOARD_DATA_DIR"])


def open_classification(open_page: Callable[..., AppTest]) -> AppTest:
    at = open_page(PAGE)
    at.selectbox(key="studio.single.task").set_value("classification").run()
    return at


def test_a_french_product_lands_on_its_google_category_with_id_and_depth(
        open_page: Callable[..., AppTest], app_env: StandinServer) -> None:
    classifier(app_env)
    at = open_classification(open_page)
    assert at.selectbox(key="studio.single.taxonomy").value == DEFAULT_REF
    assert at.selectbox(key="studio.single.route").value == "shortlist"
    at.selectbox(key="studio.single.route").set_value("levels")
    at.text_input(key="studio.single.classification.name").set_value("Bouilloire électrique inox 1,7 L")
    at.button(key="studio.single.go").click().run()
    assert not at.exception
    text = page_text(at)
    assert KETTLE_PATH in text and "id 751" in text and "depth 4 (a leaf)" in text
    assert f"taxonomy {DEFAULT_REF}" in text and "level by level" in text
    requests = len(app_env.state.requests_to("/api/chat"))
    assert 1 <= requests <= 4
    assert f"How it was chosen ({requests} requests)" in [e.label for e in at.expander]
    assert_no_html(at)


def test_a_product_that_is_only_a_code_is_not_enough_information(
        open_page: Callable[..., AppTest], app_env: StandinServer) -> None:
    classifier(app_env)
    at = open_classification(open_page)
    at.text_input(key="studio.single.classification.name").set_value("SKU 9921-B")
    at.button(key="studio.single.go").click().run()
    assert not at.exception
    assert any("Not enough information" in w.value for w in at.warning)
    assert app_env.state.requests_to("/api/chat") == []


def test_a_company_taxonomy_and_a_translation_are_chosen_on_the_page(
        open_page: Callable[..., AppTest], app_env: StandinServer) -> None:
    classifier(app_env)
    taxonomies = TaxonomyStore(data_dir())
    company = taxonomies.upload("acme", b"id,path\nM,Maison\nB,Maison > Bouilloires\nR,Mode\n",
                                source_name="acme.csv", author="ann", title="Acme", language="fr")
    taxonomies.upload_translation(DEFAULT_REF, "fr", (
        "536 - Maison et jardin\n638 - Maison et jardin > Cuisine et arts de la table\n"
        "730 - Maison et jardin > Cuisine et arts de la table > Appareils de cuisine\n"
        "751 - Maison et jardin > Cuisine et arts de la table > Appareils de cuisine > Bouilloires électriques\n"
    ).encode(), author="ann")
    at = open_classification(open_page)
    at.text_input(key="studio.single.classification.name").set_value("Bouilloire électrique inox 1,7 L")
    at.selectbox(key=f"studio.single.labels.{DEFAULT_REF}").set_value("fr").run()
    at.button(key="studio.single.go").click().run()
    text = page_text(at)
    assert "Maison et jardin > Cuisine et arts de la table > Appareils de cuisine > Bouilloires électriques" in text
    assert f"In the taxonomy's own names: {KETTLE_PATH}" in text and "id 751" in text
    def answer(body: dict) -> str:  # a taxonomy the stand-in's models do not know
        enum = body["format"]["properties"]["category"]["enum"]
        return json.dumps({"category": next((e for e in enum if "Bouilloires" in e), "Maison")})

    app_env.state.responder = answer
    at.selectbox(key="studio.single.taxonomy").set_value(company.ref).run()
    at.button(key="studio.single.go").click().run()
    assert not at.exception
    text = page_text(at)
    assert "Maison > Bouilloires" in text and "id B" in text and f"taxonomy {company.ref}" in text


def test_the_taxonomies_view_lists_searches_and_offers_uploads_to_admins(
        open_page: Callable[..., AppTest], app_env: StandinServer) -> None:
    at = open_page(PAGE)
    at.segmented_control(key="studio.mode").set_value("taxonomies").run()
    assert not at.exception
    listed = at.dataframe[0].value
    assert list(listed["ref"]) == [DEFAULT_REF, "google-apparel@2013-07-15"]
    at.text_input(key="studio.tax.query").set_value("electric kettle").run()
    found = at.dataframe[1].value
    assert found.iloc[0]["category"] == KETTLE_PATH and found.iloc[0]["id"] == "751"
    at.text_input(key="studio.tax.query").set_value("751").run()
    assert list(at.dataframe[1].value["category"]) == [KETTLE_PATH]
    text = page_text(at)
    assert "Upload a company taxonomy" in text and "Upload a translation" in text  # open local mode: an admin
    at.button(key="FormSubmitter:studio.tax.upload-Check and upload").click().run()
    assert "Choose a file to upload." in page_text(at)
