"""Prompt decks: the shipped deck, the file format's checks, the library in the data directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.errors import InvalidInput
from services.stage.decks import REPO_DECKS, Deck, DeckLibrary, DeckPrompt, parse_deck


def deck_json(**overrides: object) -> str:
    document = {"format": "ollama-dashboard-deck/1", "name": "demo", "title": "Demo", "version": "2",
                "prompts": [{"id": "one", "title": "First", "prompt": "Dis bonjour.", "preset": "classification"},
                            {"prompt": "Second prompt", "options": {"temperature": 0.2, "num_predict": 64},
                             "seed": 7}]}
    document.update(overrides)
    return json.dumps(document)


def test_the_shipped_product_deck_covers_the_catalogue_use_cases() -> None:
    deck = parse_deck((REPO_DECKS / "product-tasks.json").read_bytes())
    assert deck.name == "product-tasks" and len(deck.prompts) >= 5
    ids = " ".join(p.id for p in deck.prompts)
    for task in ("description", "extraction", "classification", "mapping", "traduction"):
        assert task in ids
    assert {p.preset for p in deck.prompts} <= {"classification", "enrichment", "creative"}


def test_a_deck_round_trips_through_its_file(tmp_path: Path) -> None:
    deck = parse_deck(deck_json())
    assert deck.prompts[1].id == "p2" and deck.prompts[1].seed == 7
    assert deck.prompts[1].options == {"temperature": 0.2, "num_predict": 64}
    library = DeckLibrary(tmp_path, repo_dir=tmp_path / "none")
    path = library.save(deck)
    assert path == tmp_path / "decks" / "demo.json"
    again = library.get("demo")
    assert again.prompts == deck.prompts and again.version == "2"


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "not valid JSON"),
    ('["a"]', "JSON object"),
    (deck_json(format="something-else"), "not a prompt deck"),
    (deck_json(name="../../etc/passwd"), "deck name"),
    (deck_json(prompts=[]), "non-empty"),
    (deck_json(prompts=[{"prompt": "  "}]), "Prompt 1 text is missing"),
    (deck_json(prompts=[{"prompt": "x", "preset": "wild"}]), "unknown preset"),
    (deck_json(prompts=[{"prompt": "x", "options": {"temperature": 9}}]), "temperature must be between"),
    (deck_json(prompts=[{"prompt": "x", "options": {"mirostat": 1}}]), "unknown options mirostat"),
    (deck_json(prompts=[{"prompt": "x", "options": {"top_k": "ten"}}]), "top_k must be a number"),
    (deck_json(prompts=[{"prompt": "x", "seed": -3}]), "seed must be"),
    (deck_json(prompts=[{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}]), "used twice"),
])
def test_bad_decks_are_refused_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_deck(text)


def test_the_library_lists_repo_and_data_decks_and_reports_broken_files(tmp_path: Path) -> None:
    library = DeckLibrary(tmp_path)
    (tmp_path / "decks").mkdir()
    (tmp_path / "decks" / "broken.json").write_text("{", encoding="utf-8")
    (tmp_path / "decks" / "misnamed.json").write_text(deck_json(), encoding="utf-8")
    library.save(Deck(name="mine", title="Mine", version="1", prompts=(DeckPrompt("a", "A", "Salut"),)))
    decks, problems = library.load_all()
    assert {d.name for d in decks} == {"product-tasks", "mine"}
    assert any("broken.json" in p and "not valid JSON" in p for p in problems)
    assert any("misnamed.json" in p and "demo.json" in p for p in problems)


def test_an_uploaded_deck_overrides_a_shipped_one_of_the_same_name(tmp_path: Path) -> None:
    library = DeckLibrary(tmp_path)
    library.import_file(deck_json(name="product-tasks", title="Ours").encode())
    assert library.get("product-tasks").title == "Ours"
    with pytest.raises(InvalidInput, match="UTF-8"):
        library.import_file(b"\xff\xfe")
