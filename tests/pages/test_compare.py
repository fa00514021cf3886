"""The compare page through AppTest: the real app script and runner against the loopback stand-in."""

from __future__ import annotations

from collections.abc import Callable

from streamlit.testing.v1 import AppTest

from services.stage.report import CompareSession
from tests.standin import StandinServer

COMPARE = "pages/compare.py"
ALL = ["local::llama3.2:1b", "local::qwen3:0.6b", "local::phi3:mini"]


def page_text(at: AppTest) -> str:
    text = "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption] + [e.value for e in at.error]
                      + [w.value for w in at.warning] + [i.value for i in at.info] + [s.value for s in at.subheader])
    return text.replace("\\", "")  # labels are Markdown-escaped


def current(at: AppTest) -> CompareSession:
    return at.session_state["compare.session"]


def choose(at: AppTest, models: list[str], *, blind: bool = False) -> AppTest:
    at.multiselect(key="compare.models").set_value(models)
    at.toggle(key="compare.blind").set_value(blind)
    return at.run()


def run_free(at: AppTest, prompt: str) -> AppTest:
    at.selectbox(key="compare.deck").set_value("free").run()
    at.text_area(key="compare.prompt").set_value(prompt)
    return at.button(key="compare.run_free").click().run()


def test_the_page_opens_and_asks_for_models(open_page: Callable[..., AppTest]) -> None:
    at = open_page(COMPARE)
    assert not at.exception
    assert at.multiselect(key="compare.models").options == ["llama3.2:1b", "qwen3:0.6b", "phi3:mini"]
    assert "Choose 2 to 4 models" in page_text(at)
    assert at.button(key="compare.run_deck").disabled


def test_a_three_way_comparison_streams_votes_and_tallies(open_page: Callable[..., AppTest],
                                                         app_env: StandinServer) -> None:
    app_env.state.configure(tokens_per_second=500, reply_tokens=20)
    at = run_free(choose(open_page(COMPARE), ALL), "Décris une robe rouge.")
    assert not at.exception
    session = current(at)
    record = session.rounds[0]
    assert [c["status"] for c in record.columns] == ["done"] * 3
    assert all(c["content"].endswith("END.") for c in record.columns)
    text = page_text(at)
    for model in ("llama3.2:1b", "qwen3:0.6b", "phi3:mini"):
        assert model in text
    assert len([m for m in at.metric if m.label == "First token"]) == 3
    seeds = {r["body"]["options"]["seed"] for r in app_env.state.requests_to("/api/chat")}
    assert seeds == {42}
    vote_key = f"compare.vote.{session.id}.1"
    at.segmented_control(key=vote_key).set_value("B").run()
    assert session.tally() == {"A": 0, "B": 1, "C": 0}
    bars = [b for b in at.get("progress")]
    assert len(bars) == 3 and sorted(b.proto.text for b in bars) == ["0 wins of 1 voted", "0 wins of 1 voted",
                                                                      "1 win of 1 voted"]
    assert "★ Leading" in page_text(at)
    assert all(not m.allow_html for m in at.markdown if "END." in m.value)


def test_blind_mode_hides_names_until_the_reveal(open_page: Callable[..., AppTest], app_env: StandinServer) -> None:
    app_env.state.configure(tokens_per_second=500, reply_tokens=10)
    at = run_free(choose(open_page(COMPARE), ALL, blind=True), "Classe ce produit.")
    assert not at.exception
    headers = [s.value for s in at.subheader]
    assert {"Model A", "Model B", "Model C"} <= set(headers)
    assert not any(name in page_text(at) for name in ("llama3.2", "qwen3", "phi3"))
    assert not [e for e in at.expander if e.label == "Thinking"]  # qwen3 thinks: no box gives it away
    assert "tally by model appears with the names at the reveal" in page_text(at)
    at.button(key="compare.reveal").click().run()
    assert current(at).revealed
    assert {"llama3.2:1b", "qwen3:0.6b", "phi3:mini"} <= {s.value.replace("\\", "") for s in at.subheader}
    assert [e.label for e in at.expander if e.label == "Thinking"] == ["Thinking"]  # revealed: thinking shows


def test_blind_letters_are_shuffled_every_round_and_votes_follow_the_model(
        open_page: Callable[..., AppTest], app_env: StandinServer) -> None:
    app_env.state.configure(tokens_per_second=2000, reply_tokens=5)
    at = choose(open_page(COMPARE), ALL, blind=True)
    for index in range(8):
        at = run_free(at, f"Question {index}")
    session = current(at)
    orders = [tuple(r.order) for r in session.rounds]
    assert all(sorted(o) == ["A", "B", "C"] for o in orders) and len(set(orders)) > 1  # 1 in 6^7 to fail
    last = session.rounds[-1]
    assert [c["slot"] for c in last.columns] == last.order  # the columns are drawn in the round's order
    at.segmented_control(key=f"compare.vote.{session.id}.{last.index}").set_value("A").run()
    assert last.vote == last.order[0]  # the audience's "A" is the model shown first, whatever its slot
    assert sum(session.tally().values()) == 1


def test_presenter_view_hides_setup_and_is_driven_by_its_bar(open_page: Callable[..., AppTest],
                                                             app_env: StandinServer) -> None:
    app_env.state.configure(tokens_per_second=2000, reply_tokens=8)
    at = choose(open_page(COMPARE), ALL[:2], blind=True)
    at.query_params["present"] = "1"
    at = at.run()
    assert not at.exception
    assert any("presenter" in h.value and "ArrowRight" in h.value for h in at.html)  # the keys' script
    assert "Next: " in page_text(at)
    assert at.button(key="present-prev").disabled
    at.button(key="present-next").click().run()  # the right arrow: prompt 1 of the deck
    assert not at.exception
    assert len(current(at).rounds) == 1 and current(at).rounds[0].finished
    assert any('class="answer-mark"' in h.value and 'data-state="done"' in h.value for h in at.html)
    at.button(key="present-vote-B").click().run()  # key 2
    record = current(at).rounds[0]
    assert record.vote == record.order[1]
    at.button(key="present-next").click().run()  # prompt 2
    assert len(current(at).rounds) == 2
    at.button(key="present-prev").click().run()  # back to round 1, nothing re-run
    assert len(current(at).rounds) == 2 and "Round 1" in page_text(at)
    at.button(key="present-reveal").click().run()  # R
    assert current(at).revealed
    at.button(key="present-exit").click().run()
    assert "present" not in at.query_params and at.toggle(key="compare.present_toggle").value is False
    assert at.toggle(key="compare.blind").value is True  # the hidden setup kept its values
    assert "Lineup (locked for this session)" in page_text(at)


def test_a_deck_is_stepped_through_one_click_per_prompt(open_page: Callable[..., AppTest],
                                                        app_env: StandinServer) -> None:
    app_env.state.configure(tokens_per_second=500, reply_tokens=10)
    at = choose(open_page(COMPARE), ALL[:2])
    assert at.selectbox(key="compare.deck").value == "product-tasks"
    at.button(key="compare.run_deck").click().run()
    at.button(key="compare.run_deck").click().run()
    assert not at.exception
    rounds = current(at).rounds
    assert [r.source.prompt_id for r in rounds] == ["description-robe", "description-seo"]
    assert rounds[0].options == {"temperature": 1.0, "top_p": 0.95, "top_k": 50, "num_predict": 512}
    sent = app_env.state.requests_to("/api/chat")[-1]["body"]
    assert sent["messages"][0]["role"] == "system" and "bouilloire" in sent["messages"][1]["content"]
    assert "Next: 3/6" in page_text(at)
    assert at.button(key="compare.run_deck").label == "Run prompt 3"


def test_a_missing_model_gets_its_own_error_and_the_others_finish(
        open_page: Callable[..., AppTest], app_env: StandinServer) -> None:
    at = choose(open_page(COMPARE), ALL)
    app_env.state.models.pop("phi3:mini")
    at = run_free(at, "Bonjour")
    assert not at.exception
    statuses = {c["model"]: c["status"] for c in current(at).rounds[0].columns}
    assert statuses == {"llama3.2:1b": "done", "qwen3:0.6b": "done", "phi3:mini": "error"}
    assert any("phi3:mini is not installed on backend local" in e.value for e in at.error)


def test_an_empty_prompt_is_refused_in_the_page(open_page: Callable[..., AppTest], app_env: StandinServer) -> None:
    at = run_free(choose(open_page(COMPARE), ALL[:2]), "   ")
    assert not at.exception
    assert any("Type a prompt first" in e.value for e in at.error)
    assert app_env.state.requests_to("/api/chat") == []


def test_model_output_is_never_html(open_page: Callable[..., AppTest], app_env: StandinServer) -> None:
    app_env.state.configure(tokens_per_second=2000)
    app_env.state.responder = lambda body: '<script>alert(1)</script> ![x](https://evil.example/p.png)'
    at = run_free(choose(open_page(COMPARE), ALL[:2]), "Bonjour")
    outputs = [m for m in at.markdown if "alert(1)" in m.value]
    assert len(outputs) == 2
    for markdown in outputs:
        assert not markdown.allow_html
        assert "\\<script>" in markdown.value and "!\\[x]" in markdown.value


def test_an_exported_report_uploads_back_as_a_replay(open_page: Callable[..., AppTest],
                                                     app_env: StandinServer) -> None:
    app_env.state.configure(tokens_per_second=500, reply_tokens=10)
    at = run_free(choose(open_page(COMPARE), ALL[:2]), "Traduis en anglais.")
    original = current(at)
    exported = original.to_json()
    at.file_uploader(key="compare.report_upload").upload("bad.json", b"{oops", "application/json").run()
    assert not at.exception
    assert any("bad.json" in e.value and "not valid JSON" in e.value for e in at.error)
    assert current(at) is original  # a bad file loses nothing
    at.file_uploader(key="compare.report_upload").upload("report.json", exported.encode(), "application/json").run()
    assert not at.exception
    replay = current(at)
    assert replay.replay_of == original.id and replay.lineup == original.lineup and not replay.rounds
    assert "Lineup (locked for this session)" in page_text(at)
    at.button(key="compare.run_deck").click().run()
    assert not at.exception
    rerun = current(at).rounds[0]
    assert rerun.prompt == "Traduis en anglais." and rerun.seed == 42
    assert rerun.options == original.rounds[0].options
    assert [c["content"] for c in rerun.columns] == [c["content"] for c in original.rounds[0].columns]


def test_without_warm_up_a_cold_start_is_marked_with_its_load_time(open_page: Callable[..., AppTest],
                                                                   app_env: StandinServer) -> None:
    app_env.state.configure(tokens_per_second=500, reply_tokens=10, load_delay_s=0.6)
    app_env.state.mark_loaded("llama3.2:1b", "5m")
    at = choose(open_page(COMPARE), ALL[:2])
    at.toggle(key="compare.warm_up").set_value(False)
    at = run_free(at, "Bonjour")
    assert not at.exception
    warnings = [w.value for w in at.warning if "Cold start" in w.value]
    assert len(warnings) == 1 and "(0.6 s" in warnings[0]
    columns = {c["model"]: c for c in current(at).rounds[0].columns}
    assert columns["qwen3:0.6b"]["cold_start"] and not columns["llama3.2:1b"]["cold_start"]
    assert current(at).rounds[0].warm_up is False
