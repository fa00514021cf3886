"""Taxonomies as data: the shipped Google taxonomy, uploads checked and versioned, translations by id."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from services.errors import InvalidInput
from services.studio.classify import DEFAULT_PLAN, window
from services.studio.taxonomy import SEPARATOR, Taxonomy, ancestors, depth
from services.studio.taxonomy_files import MAX_LINES, parse_taxonomy
from services.studio.taxonomy_search import informative, shortlist
from services.studio.taxonomy_store import DEFAULT_REF, LEGACY_REF, TaxonomyStore, category_values


@pytest.fixture(scope="module")
def google() -> Taxonomy:
    return TaxonomyStore(None).get(DEFAULT_REF)


@pytest.fixture
def store(tmp_path: Path) -> TaxonomyStore:
    return TaxonomyStore(tmp_path)


def test_the_full_google_taxonomy_ships_with_its_ids_and_version(google: Taxonomy) -> None:
    assert len(google) == 5595 and google.ref == "google@2021-09-21" and google.version == "2021-09-21"
    assert len(set(google.ids.values())) == 5595 and len(google.ids) == 5595
    assert len(google.children()) == 21 and google.max_depth() == 7
    kettles = "Home & Garden > Kitchen & Dining > Kitchen Appliances > Electric Kettles"
    assert google.id_of(kettles) == "751" and google.path_of_id("751") == kettles and google.is_leaf(kettles)
    assert all(p.rpartition(SEPARATOR)[0] in google or SEPARATOR not in p for p in google.paths)  # no orphan


def test_level_by_level_reaches_every_google_category_in_at_most_4_requests_with_bounded_options(
        google: Taxonomy) -> None:
    """The walk a perfect model would make to each of the 5,595 categories: the requests it needs and the size
    of every option list on the way."""
    worst_requests = worst_options = 0
    for target in google.paths:
        node, requests = "", 0
        while True:
            levels = DEFAULT_PLAN.first_levels if not node else DEFAULT_PLAN.then_levels
            options, trimmed = window(google, node, levels, DEFAULT_PLAN.max_options, "")
            assert not trimmed
            worst_options = max(worst_options, len(options) + 1)
            requests += 1
            on_way = max((o for o in options if o in ancestors(target)), key=depth)
            deepest = max(depth(o) for o in options)
            if on_way == target and (depth(target) < deepest or google.is_leaf(target)):
                break  # chosen with its sub-categories on offer, or a leaf
            if on_way == target:  # its sub-categories were not shown: one more request to keep it
                requests += 1
                break
            node = on_way
        worst_requests = max(worst_requests, requests)
    assert worst_requests <= DEFAULT_PLAN.max_requests == 4
    assert worst_options <= DEFAULT_PLAN.max_options + 1


def test_a_flat_level_is_trimmed_to_the_closest_options_so_the_prompt_stays_bounded() -> None:
    flat = Taxonomy(("Pièces", *(f"Pièces > Référence {i:05d} pièce détachée" for i in range(5000)),
                     "Pièces > Joint de porte de four"), name="flat")
    options, trimmed = window(flat, "Pièces", 2, DEFAULT_PLAN.max_options, "joint porte four")
    assert trimmed and len(options) == DEFAULT_PLAN.max_options
    assert "Pièces > Joint de porte de four" in options


def test_the_shortlist_weighs_rare_words_and_a_sku_says_nothing(google: Taxonomy) -> None:
    assert shortlist(google, "Cordless electric kettle 1.7 L", 5)[0].endswith("Electric Kettles")
    assert shortlist(google, "Bouilloire électrique inox", 5)[0].endswith("Electric Kettles")  # FR_EN knows it
    assert shortlist(google, "zzzz qqqq", 5) == []
    assert not informative("SKU 9921-B / Lot 7") and not informative("REF-48213") and informative("Robe Lina")


@pytest.mark.parametrize(("content", "problem"), [
    (b"A\nA > B >\n", "ends with a separator"),
    (b"A\nA > > B\n", "empty category"),
    (b"A\nA > B\nA > B\n", "duplicate of line 2"),
    (b"A\nA > Robes\nA > robes\n", "only by case"),
    (b"A > B\n", "has no parent"),
    (b"A\nA > B\nA > B > A\n", "passes twice through"),
    (b"id,path\n1,A\n1,A > B\n", "ids must be unique"),
    (b"id,path\n1,A\n,A > B\n", "has no id"),
    (b"id,parent_id,name\n1,2,A\n2,1,B\n", "a cycle"),
    (b"id,parent_id,name\n1,,A\n2,9,B\n", "an orphan"),
    (b"id;colour\n1;red\n", "needs the columns"),
])
def test_a_bad_taxonomy_is_refused_with_the_line_and_the_reason(content: bytes, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem):
        parse_taxonomy(content, "upload.txt")


def test_200000_lines_are_refused_before_any_parsing() -> None:
    data = b"Category > Sub\n" * 200_000
    started = time.perf_counter()
    with pytest.raises(InvalidInput, match=f"200,000 lines; at most {MAX_LINES:,}"):
        parse_taxonomy(data, "huge.txt")
    assert time.perf_counter() - started < 5  # counted on the bytes, not parsed line by line (a generous bound)


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_taxonomy(b"A\nA > B >\nC > D\nA\n", "x.txt")
    message = str(info.value)
    assert "3 problems" in message and "line 2" in message and "line 3" in message and "line 4" in message


@pytest.mark.parametrize(("content", "shape"), [
    ("Mode\nMode > Robes\nMode > Robes > Robes de soirée\nMaison\n", "paths"),
    ("# Google_Product_Taxonomy_Version: x\n1 - Mode\n2 - Mode > Robes\n3 - Mode > Robes > Robes de soirée\n"
     "4 - Maison\n", "google"),
    ("id,path\nM,Mode\nR,Mode > Robes\nRS,Mode > Robes > Robes de soirée\nH,Maison\n", "csv id,path"),
    ("id;parent_id;name\nM;;Mode\nR;M;Robes\nRS;R;Robes de soirée\nH;;Maison\n", "csv id,parent_id,name"),
])
def test_the_three_shapes_read_to_the_same_tree(content: str, shape: str) -> None:
    parsed = parse_taxonomy(content.encode(), "t")
    assert parsed.shape == shape
    assert parsed.paths == ("Mode", "Mode > Robes", "Mode > Robes > Robes de soirée", "Maison")


def test_uploads_are_versioned_never_overwritten_and_keep_their_ids(store: TaxonomyStore, tmp_path: Path) -> None:
    first = store.upload("acme", b"id,path\n10,Mode\n11,Mode > Robes\n", source_name="acme.csv", author="ann",
                         title="Acme catalogue", language="fr")
    second = store.upload("acme", b"id,path\n10,Mode\n11,Mode > Robes\n12,Mode > Jupes\n", source_name="b.csv",
                          author="bob")
    assert (first.ref, second.ref) == ("acme@v1", "acme@v2")
    assert (tmp_path / "taxonomies" / "acme.v1.txt").exists() and first.uploaded_by == "ann"
    old, new = store.get("acme@v1"), store.get("acme@v2")
    assert len(old) == 2 and len(new) == 3 and new.id_of("Mode > Jupes") == "12" and old.language == "fr"
    assert [i.ref for i in store.infos()] == [DEFAULT_REF, LEGACY_REF, "acme@v1", "acme@v2"]
    with pytest.raises(InvalidInput, match="shipped taxonomy"):
        store.upload("google", b"A\nA > B\n", source_name="x", author="x")
    with pytest.raises(InvalidInput, match="No taxonomy"):
        store.get("acme@v9")


def test_a_translation_is_matched_by_id_and_shown_while_answers_keep_the_taxonomy_paths(
        store: TaxonomyStore) -> None:
    count, unknown = store.upload_translation(
        DEFAULT_REF, "fr", "1 - Animaux et articles pour animaux\n"
        "536 - Maison et jardin\n638 - Maison et jardin > Cuisine et arts de la table\n"
        "730 - Maison et jardin > Cuisine et arts de la table > Appareils de cuisine\n"
        "751 - Maison et jardin > Cuisine et arts de la table > Appareils de cuisine > Bouilloires électriques\n"
        "99999999 - Inconnu\n".encode(), author="ann")
    assert (count, unknown) == (5, 1)
    french = store.get(DEFAULT_REF, "fr")
    kettles = french.path_of_id("751")
    assert kettles.endswith("Electric Kettles") and french.translated(kettles).endswith("Bouilloires électriques")
    assert french.translated("Furniture") == "Furniture"  # not translated: its own label
    assert store.info(DEFAULT_REF).languages == ("fr",)
    assert store.get(DEFAULT_REF).translated(kettles) == kettles  # without the language asked, its own labels
    with pytest.raises(InvalidInput, match="not as deep"):
        store.upload_translation(DEFAULT_REF, "de", b"751 - Haushalt\n", author="ann")


def test_download_columns_carry_the_id_the_depth_and_the_taxonomy(google: Taxonomy) -> None:
    kettles = "Home & Garden > Kitchen & Dining > Kitchen Appliances > Electric Kettles"
    assert category_values(google, kettles) == ["751", 4, DEFAULT_REF, "751"]
    assert category_values(google, "") == ["", "", "", ""]
