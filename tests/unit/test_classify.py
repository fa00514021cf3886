"""Classification level by level and from a shortlist, against the loopback stand-in's ``classifier`` profile
(format enums honoured like Ollama, or dropped like a gateway that ignores grammars)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.config import Backend
from services.db import Database
from services.ollama.client import OllamaClient
from services.studio.batch import BatchManager
from services.studio.classify import NONE_FITS, NOT_ENOUGH
from services.studio.engine import run_task
from services.studio.tabular import read_table
from services.studio.tasks import TaskParams
from services.studio.taxonomy import Taxonomy
from services.studio.taxonomy_store import DEFAULT_REF, TaxonomyStore
from services.studio.templates import Template, TemplateStore
from tests.profiles.classifier import ClassifierResponder
from tests.standin import StandinServer

KETTLE = {"name": "Bouilloire électrique inox 1,7 L", "description": "Bouilloire sans fil 2200 W, arrêt automatique."}
KETTLES_ID = "751"
LEVELS = TaskParams(taxonomy=DEFAULT_REF, route="levels")


@pytest.fixture
def standin() -> Iterator[StandinServer]:
    with StandinServer() as server:
        server.state.apply_profile("classifier")
        server.state.configure(tokens_per_second=20_000)
        server.state.responder = ClassifierResponder(time_scale=0.0, odds_scale=0.0)
        yield server


@pytest.fixture
def client(standin: StandinServer) -> Iterator[OllamaClient]:
    client = OllamaClient(Backend(name="standin", kind="ollama", url=standin.url))
    yield client
    client.close()


@pytest.fixture
def template(tmp_path: Path) -> Template:
    return TemplateStore(tmp_path).latest("classification")


@pytest.fixture(scope="module")
def google() -> Taxonomy:
    return TaxonomyStore(None).get(DEFAULT_REF)


def chats(standin: StandinServer) -> list[dict]:
    return [r["body"] for r in standin.state.requests_to("/api/chat")]


def test_a_french_kettle_lands_on_electric_kettles_level_by_level(
        client: OllamaClient, standin: StandinServer, template: Template, google: Taxonomy) -> None:
    result = run_task(client, template, "llama3.2:1b", KETTLE, TaskParams(taxonomy=DEFAULT_REF, route="levels"),
                      taxonomy=google)
    assert result.ok, result.error
    assert result.parsed["id"] == KETTLES_ID and result.parsed["depth"] == 4 and result.parsed["leaf"]
    assert result.parsed["taxonomy"] == DEFAULT_REF and result.parsed["route"] == "levels"
    bodies = chats(standin)
    assert len(bodies) == result.attempts == len(result.parsed["steps"]) <= 4
    first = bodies[0]
    assert first["format"]["properties"]["category"]["enum"] == [*google.children(), NOT_ENOUGH]
    system = first["messages"][0]["content"]
    assert "The category names are in English" in system and "French" in system  # the prompt says so
    for body in bodies[1:]:  # each later step: the options under the category chosen, and a way to stop
        enum = body["format"]["properties"]["category"]["enum"]
        assert enum[-1] == NONE_FITS and len(enum) <= 251
        listed = body["messages"][-1]["content"].split("Product:")[0]
        assert all(f"- {option}" in listed for option in enum)  # the options listed are exactly the enum
    assert result.stats["requests"] == len(bodies) and result.stats["prompt_eval_count"] > 0


def test_a_product_with_only_a_sku_is_not_enough_information_without_a_request(
        client: OllamaClient, standin: StandinServer, template: Template, google: Taxonomy) -> None:
    result = run_task(client, template, "llama3.2:1b", {"name": "SKU 9921-B", "description": "Lot 7"},
                      TaskParams(taxonomy=DEFAULT_REF, route="levels"), taxonomy=google)
    assert not result.ok and result.error.startswith("not enough information")
    assert result.parsed["status"] == "not enough information" and result.parsed["category"] is None
    assert chats(standin) == []


def test_the_model_can_say_not_enough_information_itself_and_never_lands_on_a_made_up_leaf(
        client: OllamaClient, standin: StandinServer, template: Template, google: Taxonomy) -> None:
    result = run_task(client, template, "llama3.2:1b", {"name": "Article Zorblax", "description": "Modèle Quirn"},
                      TaskParams(taxonomy=DEFAULT_REF, route="levels"), taxonomy=google)
    assert len(chats(standin)) == 1  # words, but none the model recognises: it says so at the top level
    assert not result.ok and "not enough information" in result.error and result.output == ""


def test_none_of_these_keeps_the_current_category(
        client: OllamaClient, standin: StandinServer, template: Template, google: Taxonomy) -> None:
    answers = iter(["Home & Garden", NONE_FITS])
    standin.state.responder = lambda body: json.dumps({"category": next(answers)})
    result = run_task(client, template, "llama3.2:1b", KETTLE, LEVELS, taxonomy=google)
    assert result.ok and result.output == "Home & Garden" and result.parsed["id"] == "536"
    assert result.parsed["depth"] == 1 and not result.parsed["leaf"] and result.attempts == 2


def test_without_a_grammar_small_model_habits_are_repaired_onto_the_step_options(
        client: OllamaClient, standin: StandinServer, template: Template, google: Taxonomy) -> None:
    answers = iter(["La catégorie la plus adaptée est : **home & garden**.",
                    '```json\n{"category": "Kitchen Appliances"}\n```',
                    '{"category": "Home & Garden > Kitchen & Dining > Kitchen Appliances > Electric Kettles"}'])
    standin.state.responder = lambda body: next(answers)
    result = run_task(client, template, "llama3.2:1b", KETTLE, LEVELS, taxonomy=google)
    assert result.ok and result.parsed["id"] == KETTLES_ID and result.attempts == 3
    assert result.status == "repaired" and any("by its last segment" in r for r in result.repairs)


def test_an_answer_off_the_options_is_retried_with_the_closest_options(
        client: OllamaClient, standin: StandinServer, template: Template, google: Taxonomy) -> None:
    answers = iter(['{"category": "Électroménager"}', '{"category": "Home & Garden"}', '{"category": "Kitchen & '
                    'Dining > Kitchen Appliances"}', '{"category": "Electric Kettles"}'])
    standin.state.responder = lambda body: next(answers)
    result = run_task(client, template, "llama3.2:1b", KETTLE, LEVELS, taxonomy=google)
    assert result.ok and result.parsed["id"] == KETTLES_ID
    assert "not a category of the taxonomy" in result.rejections[0]
    retry = chats(standin)[1]["messages"]
    assert retry[-1]["role"] == "user" and "Choose one of these" in retry[-1]["content"]


def test_the_default_route_is_the_shortlist_then_levels(
        client: OllamaClient, standin: StandinServer, template: Template, google: Taxonomy) -> None:
    result = run_task(client, template, "llama3.2:1b", KETTLE, TaskParams(taxonomy=DEFAULT_REF), taxonomy=google)
    assert result.ok and result.parsed["route"] == "shortlist" and result.parsed["id"] == KETTLES_ID
    assert result.attempts == 1  # "bouilloire" is in the shortlist's small lexicon: found at once


def test_the_shortlist_route_is_one_request_when_the_chosen_category_is_a_leaf(
        client: OllamaClient, standin: StandinServer, template: Template, google: Taxonomy) -> None:
    product = {"name": "Cordless electric kettle 1.7 L", "description": "Stainless steel kettle, 2200 W."}
    result = run_task(client, template, "llama3.2:1b", product,
                      TaskParams(taxonomy=DEFAULT_REF, route="shortlist"), taxonomy=google)
    assert result.ok and result.parsed["id"] == KETTLES_ID and result.attempts == 1
    enum = chats(standin)[0]["format"]["properties"]["category"]["enum"]
    assert enum[-1] == NONE_FITS and len(enum) <= 31 and all(e in google for e in enum[:-1])


def test_the_shortlist_falls_back_to_levels_when_none_fits(
        client: OllamaClient, standin: StandinServer, template: Template, google: Taxonomy) -> None:
    answers = iter([NONE_FITS, "Home & Garden", "Kitchen & Dining > Kitchen Appliances", "Electric Kettles"])
    standin.state.responder = lambda body: json.dumps({"category": next(answers)})
    result = run_task(client, template, "llama3.2:1b", KETTLE,
                      TaskParams(taxonomy=DEFAULT_REF, route="shortlist"), taxonomy=google)
    assert result.ok and result.parsed["id"] == KETTLES_ID and result.attempts == 4
    standin.state.responder = lambda body: json.dumps({"category": NONE_FITS})
    only = run_task(client, template, "llama3.2:1b", {"name": "Bouilloire"},
                    TaskParams(taxonomy=DEFAULT_REF, route="shortlist_only"), taxonomy=google)
    assert not only.ok and "no category of the shortlist fits" in only.error


def test_the_request_budget_stops_at_a_real_category(
        client: OllamaClient, standin: StandinServer, template: Template) -> None:
    deep = Taxonomy(tuple(" > ".join(f"L{d}" for d in range(1, n + 1)) for n in range(1, 12)), name="deep")
    standin.state.responder = lambda body: json.dumps(
        {"category": body["format"]["properties"]["category"]["enum"][-2]})  # always the deepest offered
    result = run_task(client, template, "llama3.2:1b", {"name": "Robe"}, TaskParams(route="levels"), taxonomy=deep)
    assert result.ok and result.attempts == 4 and result.output in deep
    assert "4 requests per product at most" in result.parsed["note"]


def test_a_company_taxonomy_in_french(client: OllamaClient, standin: StandinServer, template: Template,
                                      tmp_path: Path) -> None:
    store = TaxonomyStore(tmp_path)
    info = store.upload("acme", b"id,path\nM,Mode\nR,Mode > Robes\nJ,Mode > Jupes\nC,Cuisine\n",
                        source_name="acme.csv", author="ann", language="fr")
    standin.state.responder = lambda body: json.dumps(
        {"category": "Robes" if "Robes" in body["format"]["properties"]["category"]["enum"] else "Mode"})
    result = run_task(client, template, "llama3.2:1b", {"name": "Robe Lina"},
                      TaskParams(taxonomy=info.ref, route="levels"),
                      taxonomy=store.get(info.ref))
    assert result.ok and result.output == "Mode > Robes" and result.parsed["id"] == "R"
    system = chats(standin)[0]["messages"][0]["content"]
    assert "The category names are in French" in system


def test_a_classification_batch_downloads_the_google_product_category(
        tmp_path: Path, client: OllamaClient, template: Template) -> None:
    store = TaxonomyStore(tmp_path)
    manager = BatchManager(Database.in_dir(tmp_path), lambda _name: client, taxonomies=store)
    table = read_table("sku;nom;google_product_category\nA-1;Bouilloire électrique inox;\nA-2;SKU 77;\n".encode(),
                       "catalogue.csv")
    job_id = manager.create_job(table, template=template, model="llama3.2:1b", backend="s",
                                params=TaskParams(taxonomy=DEFAULT_REF), mapping={"name": "nom"}, concurrency=2,
                                owner="t")
    manager.start(job_id)
    assert manager.wait(job_id, 30)
    frame = manager.results_frame(job_id)
    kettle, sku = frame.to_dict("records")
    assert kettle["ai_category_id"] == KETTLES_ID and kettle["ai_category_depth"] == 4
    assert kettle["ai_taxonomy"] == DEFAULT_REF and kettle["_google_product_category"] == KETTLES_ID
    assert kettle["google_product_category"] == ""  # the file's own column is kept as it was
    assert sku["ai_status"] == "failed" and sku["ai_error"].startswith("not enough information")
    assert sku["_google_product_category"] == ""
    with pytest.raises(Exception, match="No taxonomy"):
        manager.create_job(table, template=template, model="llama3.2:1b", backend="s",
                           params=TaskParams(taxonomy="nope@v1"), mapping={"name": "nom"}, concurrency=1, owner="t")
