"""Every repair on its own, and the bad inputs no repair may let through (no network: pure functions)."""

from __future__ import annotations

import json

import pytest

from services.errors import OutputRejected
from services.studio.checks import check_output, default_taxonomy
from services.studio.repair import (
    clean_text,
    extract_json_object,
    remove_trailing_commas,
    repair_answer,
    repair_category,
    repair_description,
    repair_json,
    repair_mapping,
)
from services.studio.sentences import count_sentences, keep_sentences, sentence_spans
from services.studio.tasks import TaskParams
from services.studio.taxonomy import Taxonomy, fold

BODY = "Une robe noire en soie, parfaite pour vos soirées. Elle se porte avec élégance."
PARAMS = TaskParams()


# ---- sentences ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "count"), [
    ("Bouilloire 1,7 L en inox. Elle chauffe vite.", 2),
    ("Capacité env. 1,7 L, idéale pour la famille.", 1),
    ("Le modèle n° 5 pèse 1.5 kg et mesure env. 25 cm.", 1),
    ("Livrée avec 2 filtres, p. ex. pour le thé.", 1),
    ("Conçue par Mme Durand. Elle est unique.", 2),
    ("Une capacité de 1,7 L. Elle chauffe en 3 min.", 2),
    ("Magnifique ! Vraiment ? Oui…", 3),
    ("« Une robe. » Elle brille.", 2),
    ("Prix 12.90 €, taille 38.", 1),
    ("Sans point final", 1),
    ("", 0),
])
def test_the_sentence_counter_survives_units_abbreviations_and_decimals(text: str, count: int) -> None:
    assert count_sentences(text) == count


def test_trimming_keeps_whole_sentences_within_both_limits_never_cutting_mid_word() -> None:
    text = "Une robe noire en soie. Elle est fluide et légère, env. 120 cm de long. Elle brille le soir."
    kept, n = keep_sentences(text, 2, 300)
    assert (kept, n) == ("Une robe noire en soie. Elle est fluide et légère, env. 120 cm de long.", 2)
    kept, n = keep_sentences(text, 3, 40)  # the character limit binds first
    assert (kept, n) == ("Une robe noire en soie.", 1)
    assert keep_sentences("Une seule phrase beaucoup trop longue pour la limite donnée.", 2, 20) == ("", 0)
    cut = "Une robe noire en soie. Elle est fluide et lég"
    assert keep_sentences(cut, 2, 300, drop_unfinished=True) == ("Une robe noire en soie.", 1)
    for start, end in sentence_spans(text):
        assert text[start].isupper() and text[end - 1] == "."


# ---- text habits --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "change"), [
    (f"Voici une description élégante en français :\n\n{BODY}", "removed preamble"),
    (f"Here is the description:\n{BODY}", "removed preamble"),
    (f"Bien sûr ! {BODY}", "removed preamble"),
    (f"Description : {BODY}", "removed preamble"),
    (f"« {BODY} »", "removed surrounding quotes"),
    (f"“{BODY}”", "removed surrounding quotes"),
    (f'"{BODY}"', "removed surrounding quotes"),
    (f"„{BODY}“", "removed surrounding quotes"),
    (f"‹{BODY}›", "removed surrounding quotes"),
    (f"'{BODY}'", "removed surrounding quotes"),
    (f"«“{BODY}”»", "removed surrounding quotes"),
    (f"{BODY}\n\nN'hésitez pas à me demander d'autres variantes !", "removed closing remark"),
    (f"{BODY} Feel free to ask for more!", "removed closing remark"),
    (f"{BODY}\n\n(245 caractères)", "removed closing remark"),
    (f"{BODY}\n\n#mode #robe #soirée", "removed hashtags"),
    (f"{BODY} #mode #robe", "removed hashtags"),
    ("Une **robe noire** en soie, parfaite pour vos soirées. Elle se porte avec élégance.", "removed Markdown"),
    ("Une *robe noire* en soie, parfaite pour vos soirées. Elle se porte avec élégance.", "removed Markdown"),
    (f"**Robe Lina**\n\n{BODY}", "removed title line"),
    (f"# Robe Lina\n{BODY}", "removed title line"),
    (f"```\n{BODY}\n```", "removed code fences"),
])
def test_each_text_habit_is_removed_and_recorded(raw: str, change: str) -> None:
    repaired = clean_text(raw)
    assert repaired.text in (BODY, BODY.replace("robe noire", "robe noire"))
    assert any(c.startswith(change) for c in repaired.changes), repaired.changes
    check_output("description", repaired.text, PARAMS)  # the repaired text passes every check


def test_all_habits_at_once() -> None:
    raw = ("Bien sûr ! Voici une proposition :\n\n« **Robe Lina**, une robe noire en soie. Elle sublime vos soirées. "
           "Elle se porte aussi en journée. »\n\n#mode #soirée\n\nN'hésitez pas à demander d'autres versions !")
    repaired = repair_description(raw, PARAMS)
    assert repaired.text == "Robe Lina, une robe noire en soie. Elle sublime vos soirées."
    assert "kept 2 of 3 sentences (60 characters)" in repaired.changes
    assert len(repaired.changes) >= 5


@pytest.mark.parametrize("clean", [
    BODY,
    "Le modèle n° 5, notre best-seller #1. Capacité 1,7 L, env. 25 cm de haut.",
    "L'élégance d'une robe en soie : fluide, légère et lumineuse.",
    "Voici la robe qu'il vous faut pour l'été, en lin naturel.",  # starts with Voici but is no preamble
    "Une robe 100 % soie, taille 5*8 cm de poche.",
])
def test_a_clean_answer_is_left_alone(clean: str) -> None:
    assert clean_text(clean).changes == ()
    assert clean_text(clean).text == clean


def test_trimming_is_recorded_and_an_answer_cut_by_the_token_limit_loses_its_unfinished_sentence() -> None:
    three = "Une robe noire. Elle est fluide. Elle brille le soir."
    assert repair_description(three, PARAMS).text == "Une robe noire. Elle est fluide."
    cut = repair_description("Une robe noire. Elle est flu", PARAMS, truncated=True)
    assert cut.text == "Une robe noire." and "unfinished" in cut.changes[0]
    # Not cut by the limit: a last sentence without its period is the model's style, kept.
    assert repair_description("Une robe noire. Elle est fluide", PARAMS).text == "Une robe noire. Elle est fluide"


# ---- bad inputs -------------------------------------------------------------------------------------------


def test_an_empty_answer_is_refused_with_feedback() -> None:
    repaired = repair_description("   ", PARAMS)
    with pytest.raises(OutputRejected, match="empty") as info:
        check_output("description", repaired.text, PARAMS)
    assert info.value.feedback


def test_an_answer_that_is_only_a_preamble_is_refused_with_feedback() -> None:
    with pytest.raises(OutputRejected, match="only a preamble") as info:
        repair_description("Voici une description élégante en français :", PARAMS)
    assert "description itself" in info.value.feedback


def test_an_answer_in_the_wrong_language_is_not_repaired_but_refused_with_feedback() -> None:
    english = "A black silk dress, perfect for your evenings. It is easy to wear."
    repaired = repair_description(f"Here is the description: {english}", PARAMS)
    assert repaired.text == english
    with pytest.raises(OutputRejected, match="looks English, not French") as info:
        check_output("description", repaired.text, PARAMS)
    assert info.value.feedback == "Your answer is in English: write it in French."


def test_one_600_character_sentence_cannot_be_trimmed_and_is_refused_with_feedback() -> None:
    long = "Une robe " + "très " * 118 + "belle."
    assert len(long) > 600 and count_sentences(long) == 1
    repaired = repair_description(long, PARAMS)
    assert repaired.text == long and repaired.changes == ()  # never cut mid-sentence
    with pytest.raises(OutputRejected, match="cannot be cut at a sentence end") as info:
        check_output("description", repaired.text, PARAMS)
    assert "first sentence" in info.value.feedback and "300 characters" in info.value.feedback


def test_html_is_refused_as_before_never_repaired_away() -> None:
    repaired = repair_description(f"<p>{BODY}</p>", PARAMS)
    assert "<p>" in repaired.text
    with pytest.raises(OutputRejected, match="HTML") as info:
        check_output("description", repaired.text, PARAMS)
    assert "HTML tags" in info.value.feedback


def test_too_many_sentences_feedback_says_how_many_to_keep() -> None:
    with pytest.raises(OutputRejected) as info:
        check_output("description", "Une robe. Un style. Une soirée.", PARAMS)
    assert info.value.feedback == "Your answer has 3 sentences: keep 2."


# ---- JSON ---------------------------------------------------------------------------------------------

GOOD = {"specifications": {"puissance": "2200 W"}, "materials": ["inox"], "dimensions": {}, "safety_info": []}


def test_trailing_commas_are_removed_outside_strings_only() -> None:
    assert remove_trailing_commas('{"a": [1, 2,], "b": "x,]",}') == '{"a": [1, 2], "b": "x,]"}'
    assert remove_trailing_commas('{"a": "\\",}"}') == '{"a": "\\",}"}'


@pytest.mark.parametrize(("raw", "changes"), [
    (f"```json\n{json.dumps(GOOD)}\n```", ("removed code fences",)),
    (f"Voici les informations extraites :\n{json.dumps(GOOD)}\nJ'espère que cela aide.",
     ("removed text around the JSON",)),
    ('{"specifications": {"puissance": "2200 W",}, "materials": ["inox",], "dimensions": {}, "safety_info": [],}',
     ("removed trailing commas",)),
    (f"Voici :\n```json\n{json.dumps(GOOD)}\n```\nBonne journée", ("removed code fences",
                                                                   "removed text around the JSON")),
])
def test_extraction_json_is_read_out_of_fences_text_and_trailing_commas(raw: str, changes: tuple) -> None:
    repaired = repair_json(raw)
    assert json.loads(repaired.text) == GOOD and repaired.changes == changes
    check_output("extraction", repaired.text, PARAMS)


def test_broken_json_is_not_guessed() -> None:
    truncated = '{"specifications": {"puissance": "2200 W"}, "materials": ["inox"'
    assert extract_json_object(truncated)[0] is None
    assert repair_json(truncated).text == truncated
    with pytest.raises(OutputRejected, match="not JSON") as info:
        check_output("extraction", truncated, PARAMS)
    assert "JSON object only" in info.value.feedback
    with pytest.raises(OutputRejected, match="schema") as info:
        check_output("extraction", repair_json(json.dumps({**GOOD, "materials": "inox"})).text, PARAMS)
    assert "materials" in info.value.feedback


# ---- classification -------------------------------------------------------------------------------------

FRENCH = Taxonomy.from_lines(["Vêtements", "Vêtements > Robes", "Vêtements > Robes > Robes de soirée",
                              "Vêtements > Jupes", "Enfants", "Enfants > Robes", "Maison > Cuisine > Bouilloires"],
                             name="company")


@pytest.mark.parametrize(("raw", "path", "how"), [
    ('{"category": "Vêtements > Jupes"}', "Vêtements > Jupes", None),
    ('{"category": "vetements>jupes"}', "Vêtements > Jupes", "ignoring case, accents and spacing"),
    ('{"category": "Robes de soirée"}', "Vêtements > Robes > Robes de soirée", "by its last segment"),
    ("Bouilloires", "Maison > Cuisine > Bouilloires", "by its last segment"),
    ("La catégorie est : **Vêtements > Jupes**.", "Vêtements > Jupes", None),
    ('```json\n{"category": "VÊTEMENTS / JUPES",}\n```', "Vêtements > Jupes", "ignoring case"),
    ('{"category": "Vêtements > Robes"}', "Vêtements > Robes", None),
])
def test_categories_map_by_exact_then_folded_then_last_segment(raw: str, path: str, how: str | None) -> None:
    repaired = repair_category(raw, FRENCH)
    assert json.loads(repaired.text) == {"category": path}
    assert check_output("classification", repaired.text, PARAMS, taxonomy=FRENCH)[0] == path
    if how:
        assert any(how in c for c in repaired.changes), repaired.changes


def test_a_category_matching_two_entries_equally_is_refused_not_guessed() -> None:
    with pytest.raises(OutputRejected, match="matches 2 categories equally") as info:
        repair_category('{"category": "Robes"}', FRENCH)
    assert "- Vêtements > Robes\n- Enfants > Robes" in info.value.feedback


def test_an_unknown_category_gets_the_closest_five_in_its_feedback_shortlist_first() -> None:
    taxonomy = default_taxonomy()
    with pytest.raises(OutputRejected, match="not a category of the taxonomy") as info:
        repair_category('{"category": "Vêtements > Robes de soirée"}', taxonomy,
                        shortlist=("Apparel & Accessories > Clothing > Dresses > Formal Gowns",))
    feedback = info.value.feedback
    assert feedback.startswith('"Vêtements > Robes de soirée" is not in the taxonomy. Choose one of these 5 closest')
    options = [line[2:] for line in feedback.splitlines() if line.startswith("- ")]
    assert len(options) == 5 and all(o in taxonomy for o in options)


def test_the_taxonomy_is_an_object_passed_in_and_reads_googles_id_format() -> None:
    google = Taxonomy.from_lines(["1604 - Apparel & Accessories > Clothing", "2271 - Apparel & Accessories > "
                                  "Clothing > Dresses", "# a comment", ""])
    assert google.paths == ("Apparel & Accessories > Clothing", "Apparel & Accessories > Clothing > Dresses")
    assert google.ids["Apparel & Accessories > Clothing > Dresses"] == "2271"
    assert repair_answer("classification", "dresses", PARAMS, taxonomy=google).text == \
        '{"category": "Apparel & Accessories > Clothing > Dresses"}'
    assert fold("Électroménager › Bouilloires") == "electromenager > bouilloires"


# ---- column mapping -------------------------------------------------------------------------------------


def test_mapping_accepts_only_real_headers_after_normalising_case_spaces_and_accents() -> None:
    headers = ["Désignation", "Prix TTC", "Code EAN", "Code_Ean"]
    repaired = repair_mapping('{"name": "designation", "price": "prix  ttc", "ean": "code ean"}', headers)
    value = json.loads(repaired.text)
    assert value["name"] == "Désignation" and value["price"] == "Prix TTC"
    assert value["ean"] == "code ean"  # two headers fold to it: left for the check to refuse, not guessed
    assert len(repaired.changes) == 2
    with pytest.raises(OutputRejected, match="not a column") as info:
        check_output("column_mapping", repaired.text, PARAMS, headers=headers)
    assert '"Code EAN"' in info.value.feedback
