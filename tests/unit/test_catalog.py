"""Templates, output checks and ``run_task`` against the loopback stand-in (real sockets)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from services.errors import InvalidInput, OutputRejected
from services.ollama.client import OllamaClient
from services.ollama.options import PRESETS
from services.studio.checks import (
    category_candidates,
    check_output,
    classification_schema,
    extraction_schema,
    load_taxonomy,
)
from services.studio.engine import BackoffGate, build_request, run_task
from services.studio.tasks import BATCH_TASKS, TASKS, TaskParams, suggest_mapping
from services.studio.templates import Template, TemplateStore, render
from tests.standin import StandinServer

FR_REPLY = "Une robe rouge élégante et fluide, parfaite pour vos soirées de gala."
EN_REPLY = "A flowing red evening dress, perfect for your gala nights and the whole season."


@pytest.fixture
def store(tmp_path: Path) -> TemplateStore:
    return TemplateStore(tmp_path)


def test_every_task_ships_a_valid_template_with_a_seed_preset(store: TemplateStore) -> None:
    for task in TASKS:
        template = store.latest(task)
        assert template.source == "shipped" and [v.source for v in store.versions(task)] == ["shipped"] * \
            template.version  # earlier shipped versions stay readable (old results name them)
        assert template.preset in PRESETS
        assert template.options()["temperature"] == PRESETS[template.preset]["temperature"]
    assert store.latest("classification").options()["top_k"] == 10
    assert store.latest("description").preset == "creative"


def test_saving_writes_a_new_version_and_never_overwrites(store: TemplateStore, tmp_path: Path) -> None:
    tricky = 'Décris {{product}} en {{language}}.\nGuillemets "doubles", antislash \\ et 🎀 emoji.'
    saved = store.save("description", system="Tu es rédacteur.", prompt=tricky, preset="enrichment",
                       num_predict=300, max_attempts=2, author="alice")
    assert saved.ref == "description@v3"
    assert saved.examples == store.get("description", 2).examples  # carried over when not edited
    again = store.save("description", system="Tu es rédacteur.", prompt=tricky + " Court.", preset="enrichment",
                       num_predict=300, max_attempts=2, author="bob")
    assert again.version == 4
    versions = store.versions("description")
    assert [v.version for v in versions] == [1, 2, 3, 4]
    assert versions[2].prompt == tricky and versions[2].saved_by == "alice"  # exact TOML round trip
    assert versions[2].examples == versions[1].examples and versions[2].stop == versions[1].stop
    assert (tmp_path / "templates" / "description.v3.toml").exists()
    assert store.get("description", 1).source == "shipped"
    with pytest.raises(InvalidInput, match="Nothing changed"):
        store.save("description", system="Tu es rédacteur.", prompt=tricky + " Court.", preset="enrichment",
                   num_predict=300, max_attempts=2, author="bob")


def test_unknown_placeholder_and_bad_preset_are_refused(store: TemplateStore) -> None:
    with pytest.raises(InvalidInput, match=r"\{\{price\}\}"):
        store.save("description", system="", prompt="Describe {{price}}", preset="creative", num_predict=None,
                   max_attempts=3, author="x")
    with pytest.raises(InvalidInput, match="preset"):
        store.save("description", system="", prompt="Describe {{product}}", preset="wild", num_predict=None,
                   max_attempts=3, author="x")
    assert [v.version for v in store.versions("description")] == [1, 2]


def test_render_inserts_values_as_data() -> None:
    assert render("A {{tone}} text about {{ product }}", {"tone": "{{product}}", "product": "x"}) == \
        "A {{product}} text about x"


def test_taxonomy_is_a_few_hundred_unique_categories() -> None:
    taxonomy = load_taxonomy()
    assert 200 <= len(taxonomy) <= 1000
    assert len(set(taxonomy)) == len(taxonomy)
    assert "Apparel & Accessories > Clothing > Dresses > Formal Gowns" in taxonomy
    assert classification_schema()["properties"]["category"]["enum"] == list(taxonomy)
    assert category_candidates("Robe de soirée longue en soie")[0].startswith("Apparel & Accessories")


@pytest.mark.parametrize(
    ("raw", "params", "reason"),
    [
        ("", TaskParams(), "empty"),
        (FR_REPLY * 6, TaskParams(max_chars=200, max_sentences=20), "over the limit of 200"),
        ("Une robe. Un style. Une soirée. Un rêve.", TaskParams(max_sentences=2), "4 sentences"),
        (EN_REPLY, TaskParams(language="fr"), "looks English, not French"),
        (FR_REPLY, TaskParams(language="en"), "looks French, not English"),
        ("<b>Une robe</b> rouge pour vos soirées.", TaskParams(), "HTML"),
    ],
)
def test_description_checks_reject(raw: str, params: TaskParams, reason: str) -> None:
    with pytest.raises(OutputRejected, match=reason):
        check_output("description", raw, params)


def test_description_check_accepts_and_cleans() -> None:
    value, _ = check_output("description", f'  "{FR_REPLY}"  ', TaskParams())
    assert value == FR_REPLY


def test_extraction_checks() -> None:
    good = {"specifications": {"power": "1200 W"}, "materials": ["inox"], "dimensions": {"height": "25 cm"},
            "safety_info": ["Ne pas immerger"]}
    value, parsed = check_output("extraction", json.dumps(good), TaskParams())
    assert parsed == good and json.loads(value) == good
    with pytest.raises(OutputRejected, match="not JSON"):
        check_output("extraction", '{"specifications": {', TaskParams())
    with pytest.raises(OutputRejected, match="not an object"):
        check_output("extraction", "[1, 2]", TaskParams())
    with pytest.raises(OutputRejected, match="does not match the schema"):
        check_output("extraction", json.dumps({**good, "materials": "inox"}), TaskParams())
    with pytest.raises(OutputRejected, match="does not match the schema"):
        check_output("extraction", json.dumps({"specifications": {}}), TaskParams())


def test_classification_and_mapping_checks() -> None:
    value, _ = check_output("classification", '{"category": "apparel & accessories>clothing > dresses"}',
                            TaskParams())
    assert value == "Apparel & Accessories > Clothing > Dresses"
    with pytest.raises(OutputRejected, match="not a category"):
        check_output("classification", '{"category": "Clothing > Robes magiques"}', TaskParams())
    headers = ["Désignation", "Prix TTC", "Code EAN"]
    answer = {"name": "Désignation", "price": "Prix TTC", "ean": "Code EAN"}
    _, mapping = check_output("column_mapping", json.dumps(answer), TaskParams(), headers=headers)
    assert mapping["ean"] == "Code EAN" and mapping["description"] is None
    with pytest.raises(OutputRejected, match="not a column"):
        check_output("column_mapping", json.dumps({"name": "Name"}), TaskParams(), headers=headers)
    with pytest.raises(OutputRejected, match="used for both"):
        check_output("column_mapping", json.dumps({"name": "Prix TTC", "price": "Prix TTC"}), TaskParams(),
                     headers=headers)


def test_missing_required_field_is_refused_before_any_request(store: TemplateStore) -> None:
    with pytest.raises(InvalidInput, match="Product type is empty"):
        build_request(store.latest("description"), {"colour": "rouge"}, TaskParams())


def test_suggest_mapping_matches_french_headers() -> None:
    mapping = suggest_mapping("description", ["Référence", "Type", "Nom", "Couleur", "Matière"])
    assert mapping == {"product_type": "Type", "name": "Nom", "colour": "Couleur", "material": "Matière",
                       "occasion": None, "attributes": None}
    assert set(BATCH_TASKS) < set(TASKS)


# ---- against the stand-in ---------------------------------------------------------------------------------


def test_extraction_sends_the_schema_as_format_and_validates(client: OllamaClient, standin: StandinServer,
                                                             store: TemplateStore) -> None:
    result = run_task(client, store.latest("extraction"), "llama3.2:1b", {"text": "Bouilloire 1,7 L, inox"},
                      TaskParams())
    assert result.ok, result.error
    assert result.template_ref == "extraction@v2" and result.attempts == 1
    body = standin.state.requests_to("/api/chat")[-1]["body"]
    assert body["format"] == extraction_schema()
    assert body["options"] == {"temperature": 0.7, "top_p": 0.9, "top_k": 40, "num_predict": 800}
    assert set(result.parsed) == {"specifications", "materials", "dimensions", "safety_info"}


@pytest.mark.parametrize(("mode", "task", "reason"), [
    ("bad_json", "extraction", "not JSON"),
    ("wrong_shape", "extraction", "not an object"),
    ("unknown_enum", "classification", "not a category"),
])
def test_bad_model_output_is_retried_then_failed_with_the_reason(
        client: OllamaClient, standin: StandinServer, store: TemplateStore, mode: str, task: str, reason: str) -> None:
    standin.state.configure(format_mode=mode)
    inputs = {"text": "Bouilloire", "name": "Robe de soirée"}
    result = run_task(client, store.latest(task), "llama3.2:1b", inputs, TaskParams())
    assert not result.ok and result.output == ""
    assert reason in result.error and "3 times" in result.error
    assert result.attempts == 3 == len(standin.state.requests_to("/api/chat"))


def test_a_check_failure_then_a_good_answer_succeeds(client: OllamaClient, standin: StandinServer,
                                                     store: TemplateStore) -> None:
    answers = iter([EN_REPLY, FR_REPLY])
    standin.state.responder = lambda body: next(answers)
    result = run_task(client, store.latest("description"), "llama3.2:1b", {"product_type": "robe"}, TaskParams())
    assert result.ok and result.output == FR_REPLY and result.attempts == 2
    assert result.stats["eval_count"] > 0 and result.tokens_per_second


def test_busy_backend_is_retried_with_backoff_then_failed(client: OllamaClient, standin: StandinServer,
                                                          store: TemplateStore) -> None:
    standin.state.configure(fault="busy")
    gate = BackoffGate(base_s=0.05, max_s=0.2)
    result = run_task(client, store.latest("description"), "llama3.2:1b", {"product_type": "robe"}, TaskParams(),
                      gate=gate, max_transport_attempts=3)
    assert not result.ok and "gave up after 3 attempts" in result.error and "busy" in result.error
    times = [r["at"] for r in standin.state.requests_to("/api/chat")]
    assert len(times) == 3
    assert all(b - a >= 0.02 for a, b in itertools.pairwise(times))  # backed off, not hammered


def test_model_not_found_is_not_retried(client: OllamaClient, standin: StandinServer, store: TemplateStore) -> None:
    result = run_task(client, store.latest("description"), "nope:1b", {"product_type": "robe"}, TaskParams())
    assert not result.ok and "not found" in result.error.lower() and result.attempts == 1


def test_template_round_trip_through_dict() -> None:
    template = Template(task="translation", version=4, title="T", preset="enrichment", system="s",
                        prompt="Traduire {{text}} en {{language}}")
    assert Template.from_dict(template.as_dict()) == template.validate()
