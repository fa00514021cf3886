"""The product studio's taxonomy side: choosing a taxonomy and a route for a classification, showing where a
product landed (path, id, depth, the translated label, each step), and the Taxonomies view: what is loaded, a
search, and for admins the upload of a company's own taxonomy or of a translation.

Category names and uploaded labels are untrusted text: shown through ``plain_label``, ``st.code`` or
``st.dataframe``, never as HTML.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pandas as pd
import streamlit as st

from components import runtime, session
from services import format as fmt
from services.errors import DashboardError, InvalidInput, user_message
from services.safe_text import plain_label
from services.studio.attempts import TaskResult
from services.studio.classify import DEFAULT_ROUTE
from services.studio.tasks import CLASSIFICATION_ROUTES, TaskParams
from services.studio.taxonomy import Taxonomy
from services.studio.taxonomy_files import MAX_BYTES, MAX_LINES
from services.studio.taxonomy_search import shortlist
from services.studio.taxonomy_store import DEFAULT_REF, TaxonomyInfo, TaxonomyStore

LANGUAGE_CHOICES = {"en": "English", "fr": "French", "de": "German", "es": "Spanish", "it": "Italian"}
SEARCH_RESULTS = 25


def store() -> TaxonomyStore:
    return runtime.taxonomy_store()


def taxonomy_for(params: TaskParams) -> Taxonomy:
    """The taxonomy a run's parameters name, with its labels in the language chosen (when loaded)."""
    return store().get(params.taxonomy, params.label_language)


def _one_line(text: str, limit: int = 90) -> str:
    """Option labels are plain text, not Markdown: whitespace collapsed and shortened, nothing escaped."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _info_label(info: TaxonomyInfo) -> str:
    return _one_line(f"{info.ref} · {info.title}")


def classification_params(prefix: str, params: TaskParams) -> TaskParams:
    """Taxonomy, route and label language for a classification (per task on the page, per batch)."""
    infos = {i.ref: i for i in store().infos()}
    refs = list(infos)
    cols = st.columns([3, 2, 1])
    ref = cols[0].selectbox("Taxonomy", refs, index=refs.index(DEFAULT_REF), key=f"{prefix}.taxonomy",
                            format_func=lambda r: _info_label(infos[r]),
                            help="The shipped Google product taxonomy, its earlier apparel subset, or a taxonomy "
                                 "an admin uploaded (Taxonomies). Results name the version used.")
    routes = [r for r in CLASSIFICATION_ROUTES if r and r != "single"]
    route = cols[1].selectbox("How to choose", routes, index=routes.index(DEFAULT_ROUTE), key=f"{prefix}.route",
                              format_func=CLASSIFICATION_ROUTES.get,
                              help="Shortlist (the default): the 30 categories sharing most words with the product "
                                   "in one request, then level by level below the one chosen, or from the top when "
                                   "none fits. Level by level: the top levels, then two levels at a time. Every "
                                   "request is limited to real categories; at most 4 per product.")
    languages = ["", *infos[ref].languages]
    label_language = cols[2].selectbox(
        "Labels", languages, key=f"{prefix}.labels.{ref}",
        format_func=lambda code: "its own" if not code else LANGUAGE_CHOICES.get(code, code),
        disabled=len(languages) == 1, help="Show categories in a loaded translation (the model still answers "
                                           "with the taxonomy's own names).")
    return replace(params, taxonomy=ref, route=route, label_language=label_language)


def render_category(result: TaskResult) -> None:
    """Where the product landed: the path (translated when a translation is shown), the id, the depth reached,
    the taxonomy, and the choice made at each step."""
    parsed: dict[str, Any] = result.parsed if isinstance(result.parsed, dict) else {}
    path = result.output
    shown = parsed.get("label") or path
    st.markdown(f"**{plain_label(shown, 400)}**")
    if shown != path:
        st.caption(plain_label(f"In the taxonomy's own names: {path}", 400))
    st.code(path, language=None, wrap_lines=True)
    facts = []
    if parsed.get("id"):
        facts.append(f"id {parsed['id']}")
    if parsed.get("depth"):
        facts.append(f"depth {parsed['depth']}" + (" (a leaf)" if parsed.get("leaf") else " (it has sub-categories)"))
    if parsed.get("taxonomy"):
        facts.append(f"taxonomy {parsed['taxonomy']}")
    if parsed.get("route"):
        facts.append(CLASSIFICATION_ROUTES.get(parsed["route"], parsed["route"]).lower())
    st.caption(plain_label(" · ".join(facts), 300))
    if parsed.get("note"):
        st.caption(plain_label(f"Stopped here: {parsed['note']}", 300))
    render_steps(parsed.get("steps") or [])


def render_steps(steps: list[dict[str, Any]]) -> None:
    if not steps:
        return
    with st.expander(f"How it was chosen ({fmt.count(len(steps), 'request')})", icon=":material/account_tree:"):
        frame = pd.DataFrame([{"step": n, "from": s["at"] or "top level", "options": s["offered"],
                               "chosen": s["chose"] + (" (trimmed list)" if s.get("trimmed") else "")}
                              for n, s in enumerate(steps, 1)])
        st.dataframe(frame, hide_index=True, width="stretch")


def render_not_classified(result: TaskResult) -> bool:
    """A classification that found nothing to go by: said plainly (True when shown)."""
    parsed = result.parsed if isinstance(result.parsed, dict) else {}
    if parsed.get("status") != "not enough information":
        return False
    st.warning("Not enough information: " + plain_label(result.error.removeprefix("not enough information: "), 300)
               + ". Add the product's name or description.", icon=":material/help:")
    render_steps(parsed.get("steps") or [])
    return True


# ---- the Taxonomies view ---------------------------------------------------------------------------------


def taxonomies_view() -> None:
    infos = store().infos()
    st.dataframe(pd.DataFrame([{
        "ref": i.ref, "title": i.title, "source": i.source, "language": i.language,
        "translations": ", ".join(i.languages), "uploaded by": i.uploaded_by, "uploaded at": i.uploaded_at,
        "from": i.uploaded_from} for i in infos]), hide_index=True, width="stretch")
    _search(infos)
    identity = session.current_identity()
    if identity.role != "admin":
        st.caption("Admins upload a company's own taxonomy here, or a translation of one.")
        return
    left, right = st.columns(2)
    with left:
        _upload_form()
    with right:
        _translation_form(infos)


def _search(infos: list[TaxonomyInfo]) -> None:
    cols = st.columns([2, 3])
    ref = cols[0].selectbox("Browse", [i.ref for i in infos], key="studio.tax.browse")
    query = cols[1].text_input("Search categories", key="studio.tax.query", max_chars=200,
                               placeholder="kettle, robe de soirée, 751…")
    try:
        taxonomy = store().get(ref)
    except DashboardError as exc:
        st.error(user_message(exc))
        return
    query = query.strip()
    if query.isdigit() and taxonomy.path_of_id(query):
        paths = [taxonomy.path_of_id(query) or ""]
    elif query:
        paths = shortlist(taxonomy, query, SEARCH_RESULTS)
    else:
        paths = list(taxonomy.children())
    st.caption(f"{len(taxonomy):,} categories, {taxonomy.max_depth()} levels deep" + (
        "; the top levels:" if not query else f"; {len(paths)} matching:"))
    st.dataframe(pd.DataFrame([{"id": taxonomy.id_of(p), "category": p,
                                "sub-categories": len(taxonomy.children(p))} for p in paths]),
                 hide_index=True, width="stretch", height=min(36 * (len(paths) + 1) + 4, 420),
                 column_config={"id": st.column_config.TextColumn("id", width="small"),
                                "category": st.column_config.TextColumn("category", width="large"),
                                "sub-categories": st.column_config.NumberColumn("sub-categories", width="small")})


def _upload_form() -> None:
    with st.form("studio.tax.upload", clear_on_submit=True):
        st.markdown("**Upload a company taxonomy**")
        st.caption(f"One path per line with `>` between levels, Google's `id - path` lines, or CSV with the "
                   f"columns `id,path` or `id,parent_id,name`. Checked before it is kept: duplicates, orphans, "
                   f"cycles, unique ids, trailing separators; at most {MAX_LINES:,} lines and "
                   f"{fmt.size(MAX_BYTES)}. Uploading a name again makes a new version.")
        cols = st.columns([2, 3, 2])
        name = cols[0].text_input("Name", max_chars=40, placeholder="acme")
        title = cols[1].text_input("Title", max_chars=80, placeholder="Acme catalogue tree")
        language = cols[2].selectbox("Names in", list(LANGUAGE_CHOICES), format_func=LANGUAGE_CHOICES.get)
        uploaded = st.file_uploader("Taxonomy file", type=["txt", "csv", "tsv"], key="studio.tax.file",
                                    max_upload_size=max(MAX_BYTES // (1024 * 1024), 1))
        if st.form_submit_button("Check and upload", icon=":material/upload:"):
            try:
                identity = session.require_role("admin", "upload a taxonomy")
                if uploaded is None:
                    raise InvalidInput("Choose a file to upload.")
                info = store().upload(name, uploaded.getvalue(), source_name=uploaded.name, author=identity.subject,
                                      title=title, language=language)
            except DashboardError as exc:  # it quotes the file's own lines: shown as text, never Markdown
                st.error(plain_label(user_message(exc), 2000), icon=":material/block:")
            else:
                st.success(plain_label(f"Kept as {info.ref}: {info.uploaded_from}. Choose it in a classification.",
                                       300), icon=":material/check:")


def _translation_form(infos: list[TaxonomyInfo]) -> None:
    with st.form("studio.tax.translation", clear_on_submit=True):
        st.markdown("**Upload a translation**")
        st.caption("The same categories in another language, matched by id (`id - path`, `id<TAB>path` or CSV "
                   "`id,path`). The page then shows them in it; the model keeps the taxonomy's own names.")
        cols = st.columns([3, 2])
        ref = cols[0].selectbox("Of", [i.ref for i in infos], format_func=_one_line)
        language = cols[1].selectbox("Into", [c for c in LANGUAGE_CHOICES if c != "en"],
                                     format_func=LANGUAGE_CHOICES.get)
        uploaded = st.file_uploader("Translation file", type=["txt", "csv", "tsv"], key="studio.tax.labels",
                                    max_upload_size=max(MAX_BYTES // (1024 * 1024), 1))
        if st.form_submit_button("Check and upload", icon=":material/translate:"):
            try:
                identity = session.require_role("admin", "upload a taxonomy translation")
                if uploaded is None:
                    raise InvalidInput("Choose a file to upload.")
                count, unknown = store().upload_translation(ref, language, uploaded.getvalue(),
                                                            author=identity.subject)
            except DashboardError as exc:  # it quotes the file's own lines: shown as text, never Markdown
                st.error(plain_label(user_message(exc), 2000), icon=":material/block:")
            else:
                st.success(f"{count:,} labels in {LANGUAGE_CHOICES.get(language, language)} loaded for "
                           f"{plain_label(ref, 60)}" + (f"; {unknown:,} ids not in it were ignored" if unknown else "")
                           + ".", icon=":material/check:")
