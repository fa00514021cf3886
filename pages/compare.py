"""Demo mode: 2 to 4 models answer the same prompt side by side, live, fairly and reproducibly.

The full page (setup, decks, exports, votes and tally) for preparing; the presenter view (Present, or
``?present=1``, ``components.presenter``) for the projector: prompt and columns only, driven by keys.
"""

from __future__ import annotations

import random
from functools import partial

import streamlit as st

from components import compare as view
from components import presenter, runtime, session
from components.router import enter_page
from services.errors import DashboardError, InvalidInput, user_message
from services.ollama.options import PRESETS
from services.safe_text import plain_label
from services.stage.compare import ComparisonRun
from services.stage.decks import Deck, round_spec
from services.stage.lineup import MAX_MODELS, MIN_MODELS, SLOTS, Contestant, RoundSpec
from services.stage.report import TIE, CompareSession, RoundRecord, Source, parse_report, render_html

SESSION_KEY = "compare.session"
PENDING_KEY = "compare.pending"
STEP_KEY = "compare.step"
REPLAY_KEY = "compare.replay_deck"
DECK_KEY = "compare.deck"
SHOWN_KEY = "compare.shown_round"
ROUND_PICKER_KEY = "compare.round_picker"
NOTICE_KEY = "compare.notice"
FREE = "free"
SEP = "::"
DEFAULTS = {"compare.preset": "enrichment", "compare.seed": 42, "compare.num_predict": 512,
            "compare.warm_up": True, "compare.blind": False, DECK_KEY: "product-tasks"}

enter_page("compare")
for key, value in DEFAULTS.items():
    st.session_state.setdefault(key, value)
settings = runtime.settings()
library = runtime.deck_library()
current: CompareSession | None = st.session_state.get(SESSION_KEY)
# A session's lineup is fixed once it has rounds (or came from a report), so its results stay comparable.
locked = current is not None and (bool(current.rounds) or bool(current.replay_of))


# ---- choices ----------------------------------------------------------------------------------
def _model_choices() -> tuple[list[str], list[str]]:
    """Every chat-capable model of every configured backend, as ``backend::model``; and per-backend problems."""
    choices, problems = [], []
    for backend in settings.backends:
        try:
            models = session.installed_models(backend)
        except DashboardError as exc:
            problems.append(f"{backend.name}: {user_message(exc)}")
            continue
        choices += [f"{backend.name}{SEP}{m.name}" for m in models if "embedding" not in m.capabilities]
    return choices, problems


def _label(choice: str) -> str:
    backend, _, model = choice.partition(SEP)
    return model if len(settings.backends) == 1 else f"{model} · {backend}"


def _contestants(choices: list[str], *, blind: bool) -> list[Contestant]:
    picked = list(choices)
    if blind:
        random.SystemRandom().shuffle(picked)  # the presenter's own order must not give the letters away
    out = []
    for slot, choice in zip(SLOTS, picked, strict=False):
        backend, _, model = choice.partition(SEP)
        out.append(Contestant(slot, model, settings.backend(backend)))
    return out


def _decks() -> tuple[dict[str, Deck], list[str]]:
    decks, problems = library.load_all()
    by_name = {d.name: d for d in decks}
    replay: Deck | None = st.session_state.get(REPLAY_KEY)
    if replay is not None:
        by_name[replay.name] = replay
    return by_name, problems


# ---- callbacks (they run before the script, so state they set is seen by the widgets) ----------
def _queue(spec: RoundSpec, source: Source, advance: str | None = None) -> None:
    st.session_state[PENDING_KEY] = (spec, source)
    st.session_state.pop(SHOWN_KEY, None)
    if advance:
        steps = st.session_state.setdefault(STEP_KEY, {})
        steps[advance] = steps.get(advance, 0) + 1


def _run_free() -> None:
    state = st.session_state
    spec = RoundSpec(prompt=state.get("compare.prompt", ""), system=state.get("compare.system", ""),
                     options=_options(), seed=int(state["compare.seed"]), warm_up=bool(state["compare.warm_up"]))
    _queue(spec, Source(title="Free prompt"))


def _options() -> dict:
    options = dict(PRESETS.get(st.session_state.get("compare.preset") or "", PRESETS["enrichment"]))
    if st.session_state.get("compare.num_predict"):
        options["num_predict"] = int(st.session_state["compare.num_predict"])
    return options


def _run_deck_step(deck: Deck, index: int) -> None:
    prompt = deck.prompts[index]
    state = st.session_state
    spec = round_spec(prompt, deck=deck, preset=state.get("compare.preset") or "enrichment",
                      seed=int(state["compare.seed"]), num_predict=state.get("compare.num_predict"),
                      system=state.get("compare.system", ""), warm_up=bool(state["compare.warm_up"]))
    _queue(spec, Source(deck.name, deck.version, prompt.id, prompt.title), advance=deck.name)


def _move(deck: str, delta: int, size: int) -> None:
    steps = st.session_state.setdefault(STEP_KEY, {})
    steps[deck] = min(max(steps.get(deck, 0) + delta, 0), size)


def _vote(record: RoundRecord, key: str) -> None:
    _vote_letter(record, st.session_state.get(key) or "")


def _vote_letter(record: RoundRecord, letter: str) -> None:
    """The audience votes by the letter it saw; the round records the model's slot behind it."""
    active = st.session_state.get(SESSION_KEY)
    if active is None or not letter:
        return
    active.vote(record.index, letter if letter == TIE else active.slot_for_letter(letter, record))


def _show(index: int) -> None:
    st.session_state[SHOWN_KEY] = index


def _pick_round() -> None:
    picked = st.session_state.get(ROUND_PICKER_KEY)
    if picked is not None:
        _show(picked)


def _reveal() -> None:
    active = st.session_state.get(SESSION_KEY)
    if active is not None:
        active.revealed = True


def _new_session() -> None:
    st.session_state.pop(SESSION_KEY, None)
    st.session_state.pop(REPLAY_KEY, None)
    st.session_state.pop(SHOWN_KEY, None)
    if st.session_state.get(DECK_KEY, "").startswith("replay-"):
        st.session_state[DECK_KEY] = "product-tasks"


def _import_deck() -> None:
    upload = st.session_state.get("compare.deck_upload")
    if upload is None:
        return
    try:
        session.require_role("operator", "save a prompt deck")
        deck = library.import_file(upload.getvalue())
    except DashboardError as exc:
        st.session_state[NOTICE_KEY] = ("error", f"{upload.name}: {user_message(exc)}")
        return
    st.session_state[DECK_KEY] = deck.name
    st.session_state[NOTICE_KEY] = ("success", f"Deck “{deck.title}” saved to the data directory.")


def _import_report() -> None:
    upload = st.session_state.get("compare.report_upload")
    if upload is None:
        return
    try:
        loaded = parse_report(upload.getvalue())
        loaded.contestants(settings.backends)  # every backend must exist here
        deck = loaded.replay_deck()
    except DashboardError as exc:
        st.session_state[NOTICE_KEY] = ("error", f"{upload.name}: {user_message(exc)}")
        return
    st.session_state[SESSION_KEY] = CompareSession(lineup=loaded.lineup, blind=loaded.blind, replay_of=loaded.id)
    st.session_state[REPLAY_KEY] = deck
    st.session_state[DECK_KEY] = deck.name
    st.session_state.setdefault(STEP_KEY, {})[deck.name] = 0
    st.session_state.pop(SHOWN_KEY, None)
    st.session_state[NOTICE_KEY] = ("success", f"Loaded session {loaded.id}: same models, same prompts, same "
                                               "options and seeds. Step through the replay deck to re-run it.")


def _presenter_moves(deck: Deck | None, step: int, shown: int | None) -> presenter.Moves:
    """Right: the next round already run, else the deck's next prompt. Left: the previous round."""
    rounds = [r.index for r in current.rounds] if current is not None else []
    later = [i for i in rounds if shown is not None and i > shown]
    earlier = [i for i in rounds if shown is not None and i < shown]
    next_move, next_label = None, "Next"
    if later:
        next_move, next_label = (lambda: _show(later[0])), f"Round {later[0]}"
    elif deck is not None and step < len(deck.prompts) and ready:
        next_move, next_label = (lambda: _run_deck_step(deck, step)), f"Prompt {step + 1}/{len(deck.prompts)}"
    previous = (lambda: _show(earlier[-1])) if earlier else None
    return presenter.Moves(previous=previous, previous_label=f"Round {earlier[-1]}" if earlier else "Previous",
                           next=next_move, next_label=next_label, reveal=_reveal, vote=_vote_letter)


# ---- page -------------------------------------------------------------------------------------
view.settle_interrupted_run()
view.inject_stage_css()
present = presenter.active()
if present:
    presenter.inject()
else:
    head = st.columns([5, 1], vertical_alignment="bottom")
    head[0].title("Compare models", anchor=False)
    presenter.render_switch(head[1])
notice = st.session_state.pop(NOTICE_KEY, None)
if notice:
    (st.error if notice[0] == "error" else st.success)(notice[1])

choices, backend_problems = _model_choices()
decks, deck_problems = _decks()
# In the presenter view the setup is drawn but hidden (its widgets keep their values; an undrawn widget loses it).
setup_area = st.container(key="compare-setup-hidden" if present else "compare-setup")

with setup_area:
    # Collapsed once a round starts: in blind mode the audience must not read the names off the setup.
    starting = st.session_state.get(PENDING_KEY) is not None
    with st.expander("Setup: models, fairness, parameters", icon=":material/tune:", expanded=not (locked or starting)):
        if locked and current is not None:
            names = ", ".join(f"{e['slot']}: {current.display_name(e['slot'])}" for e in current.lineup)
            st.markdown(plain_label(f"Lineup (locked for this session): {names}", limit=400))
            st.caption("Start a new session to change the models or blind mode; export this one first.")
        else:
            st.multiselect(f"Models ({MIN_MODELS} to {MAX_MODELS})", choices, key="compare.models",
                           max_selections=MAX_MODELS, format_func=_label,
                           placeholder="Choose the models to compare" if choices else "No models available")
            for problem in backend_problems:
                st.warning(problem, icon=":material/cloud_off:")
        cols = st.columns(2)
        cols[0].toggle("Blind mode", key="compare.blind", disabled=locked,
                       help="Names hidden as Model A, B, C, D (in a shuffled order) until you reveal them.")
        cols[1].toggle("Warm up first", key="compare.warm_up",
                       help="Loads every model before timing, so a cold load does not count against one of them. "
                            "Off: a model that had to load is marked 'cold start' with its load time.")
        cols = st.columns([3, 1, 1])
        cols[0].segmented_control("Preset (for free prompts and deck prompts without one)", list(PRESETS),
                                  key="compare.preset", required=True, format_func=str.capitalize)
        cols[1].number_input("Seed (same for all)", 0, 2**31 - 1, step=1, key="compare.seed")
        cols[2].number_input("Max tokens", 1, 32_768, step=64, key="compare.num_predict",
                             help="num_predict: keeps long answers from running on during a demo.")
        st.text_area("System prompt (free prompts; a deck may bring its own)", key="compare.system", height=68)

    with st.popover("Decks, exports and re-runs", icon=":material/folder_open:"):
        st.file_uploader("Add a prompt deck (JSON)", type=["json"], key="compare.deck_upload", on_change=_import_deck,
                         help="Saved in the data directory; the file format is the one of decks/product-tasks.json.")
        st.file_uploader("Re-run an exported session (JSON report)", type=["json"], key="compare.report_upload",
                         on_change=_import_report)
        for problem in deck_problems:
            st.warning(problem, icon=":material/description:")
        if current is not None and current.rounds:
            # Made when clicked (on its own thread), not on every rerun: a long session's report is large.
            st.download_button("Export HTML report", partial(render_html, current),
                               file_name=f"comparison-{current.id}.html",
                               mime="text/html", icon=":material/download:", key="compare.export_html",
                               help="One offline file, printable to PDF. Model output is escaped, nothing is loaded.")
            st.download_button("Export JSON (re-runnable)", current.to_json,
                               file_name=f"comparison-{current.id}.json", mime="application/json",
                               icon=":material/download:", key="compare.export_json")
        if current is not None:
            st.button("New session", icon=":material/restart_alt:", on_click=_new_session, key="compare.new",
                      help="Discards this session's rounds and votes (export them first).")

    # The prompt bar: a deck step (one click per prompt) or a free prompt.
    deck_names = [FREE, *decks]
    if st.session_state.get(DECK_KEY) not in deck_names:
        st.session_state[DECK_KEY] = FREE
    bar = st.columns([2, 5], vertical_alignment="bottom")
    deck_name = bar[0].selectbox("Prompts from", deck_names, key=DECK_KEY,
                                 format_func=lambda n: "Free prompt" if n == FREE else decks[n].label)
    ready = locked or len(st.session_state.get("compare.models") or []) >= MIN_MODELS
    if deck_name == FREE:
        with bar[1]:
            st.text_area("Prompt", key="compare.prompt", height=90, placeholder="The same prompt goes to every model.")
        st.button("Run on all models", icon=":material/play_arrow:", type="primary", key="compare.run_free",
                  on_click=_run_free, disabled=not ready)
    else:
        deck = decks[deck_name]
        step = min(st.session_state.setdefault(STEP_KEY, {}).get(deck_name, 0), len(deck.prompts))
        with bar[1]:
            if step < len(deck.prompts):
                upcoming = deck.prompts[step]
                st.markdown(plain_label(f"Next: {step + 1}/{len(deck.prompts)} · {upcoming.title}", limit=200))
                st.caption(plain_label(upcoming.prompt, limit=240))
            else:
                st.markdown(plain_label(f"{deck.title}: all {len(deck.prompts)} prompts done.", limit=200))
        nav = st.container(horizontal=True)
        nav.button("Previous", icon=":material/skip_previous:", key="compare.prev", on_click=_move,
                   args=(deck_name, -1, len(deck.prompts)), disabled=step == 0)
        nav.button("Skip", icon=":material/skip_next:", key="compare.skip", on_click=_move,
                   args=(deck_name, 1, len(deck.prompts)), disabled=step >= len(deck.prompts))
        if step < len(deck.prompts):
            nav.button(f"Run prompt {step + 1}", icon=":material/play_arrow:", type="primary", key="compare.run_deck",
                       on_click=_run_deck_step, args=(deck, step), disabled=not ready)
    if not ready:
        st.info(f"Choose {MIN_MODELS} to {MAX_MODELS} models in Setup to start.", icon=":material/info:")

pending = st.session_state.pop(PENDING_KEY, None)
deck_now = decks.get(deck_name) if deck_name != FREE else None
step_now = min(st.session_state.get(STEP_KEY, {}).get(deck_name, 0), len(deck_now.prompts)) if deck_now else 0
if pending is not None:
    spec, source = pending
    try:
        session.require_role("operator", "run a comparison")
        if not locked or current is None:
            picked = st.session_state.get("compare.models") or []
            if not MIN_MODELS <= len(picked) <= MAX_MODELS:
                raise InvalidInput(f"Choose {MIN_MODELS} to {MAX_MODELS} models to compare.")
            blind = bool(st.session_state["compare.blind"])
            current = CompareSession.for_contestants(_contestants(picked, blind=blind), blind=blind)
            st.session_state[SESSION_KEY] = current
        order = current.new_order()  # blind: a fresh shuffle every round, so letters do not follow models
        by_slot = {c.slot: c for c in current.contestants(settings.backends)}
        run = ComparisonRun(spec, [by_slot[slot] for slot in order], session.get_client)
    except DashboardError as exc:
        st.error(user_message(exc), icon=":material/edit_off:")
    else:
        run.start()  # requests go out now, while the prompt and the column heads are drawn
        record = current.add_round(spec, source, order=order)
        bar = presenter.render_bar(current, record, _presenter_moves(deck_now, step_now, record.index),
                                   running=True) if present else None
        view.render_prompt(record)
        view.stream_round(current, record, run, present=present, stop_at=bar)
        st.rerun()  # redraw the page around the finished round: votes, tally, exports

shown_record: RoundRecord | None = None
if current is not None and current.rounds:
    indices = [r.index for r in current.rounds]
    wanted = st.session_state.get(SHOWN_KEY)
    shown_record = current.rounds[indices.index(wanted)] if wanted in indices else current.rounds[-1]

if present:
    moves = _presenter_moves(deck_now, step_now, shown_record.index if shown_record else None)
    presenter.render_bar(current, shown_record, moves)
    if shown_record is None:
        upcoming = deck_now.prompts[step_now].title if deck_now and step_now < len(deck_now.prompts) else ""
        presenter.render_waiting(f"Next: {upcoming}" if upcoming and ready else
                                 "Exit the presenter view to choose the models and the prompts.")
    else:
        view.render_prompt(shown_record)
        view.render_round(current, shown_record, present=True)
elif current is not None and shown_record is not None:
    indices = [r.index for r in current.rounds]
    if len(indices) > 1:
        st.session_state[ROUND_PICKER_KEY] = shown_record.index
        st.segmented_control("Round shown", indices, key=ROUND_PICKER_KEY, on_change=_pick_round,
                             format_func=lambda i: f"Round {i}")
    record = shown_record
    view.render_prompt(record)
    view.render_round(current, record)
    vote_key = f"compare.vote.{current.id}.{record.index}"
    if record.vote:
        st.session_state.setdefault(vote_key, TIE if record.vote == TIE else current.letter(record.vote, record))
    row = st.columns([3, 1], vertical_alignment="bottom")
    row[0].segmented_control(
        "Audience's pick for this round", view.vote_choices(current, record), key=vote_key, on_change=_vote,
        args=(record, vote_key), disabled=not record.finished,
        format_func=lambda letter: "Tie" if letter == TIE else current.display_name(
            current.slot_for_letter(letter, record), record))
    if current.hidden:
        row[1].button("Reveal the models", icon=":material/visibility:", key="compare.reveal", on_click=_reveal,
                      width="stretch")
    st.subheader("Tally", anchor=False)
    view.render_tally(current)
