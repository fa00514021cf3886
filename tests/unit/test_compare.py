"""The N-way runner against the loopback stand-in over real sockets: parallel, independent, stoppable."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from services.config import Backend
from services.errors import InvalidInput
from services.ollama.client import OllamaClient
from services.stage.compare import ComparisonRun, run_to_end
from services.stage.lineup import ColumnSnapshot, Contestant, RoundSpec
from tests.standin import StandinServer, _model_record

MODELS = ["llama3.2:1b", "qwen3:0.6b", "phi3:mini", "gemma2:2b"]


def add_fourth_model(server: StandinServer) -> None:
    server.state.models["gemma2:2b"] = _model_record("gemma2:2b", 1_629_518_495, "gemma2", "2.6B", "Q4_0",
                                                     ["completion"], 8192)


class Clients:
    """One client per backend, like the page's cached ``get_client``."""

    def __init__(self) -> None:
        self._clients: dict[str, OllamaClient] = {}

    def __call__(self, backend: Backend) -> OllamaClient:
        if backend.name not in self._clients:
            self._clients[backend.name] = OllamaClient(backend, connect_timeout_s=2.0, load_timeout_s=30.0,
                                                       stall_timeout_s=10.0)
        return self._clients[backend.name]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


@pytest.fixture
def clients() -> Iterator[Clients]:
    pool = Clients()
    yield pool
    pool.close()


@pytest.fixture
def four(standin: StandinServer, backend: Backend) -> list[Contestant]:
    add_fourth_model(standin)
    return [Contestant(slot, model, backend) for slot, model in zip("ABCD", MODELS, strict=True)]


def by_slot(snaps: list[ColumnSnapshot]) -> dict[str, ColumnSnapshot]:
    return {s.slot: s for s in snaps}


def test_four_models_stream_in_parallel_with_the_same_options_and_seed(
        standin: StandinServer, four: list[Contestant], clients: Clients) -> None:
    standin.state.configure(tokens_per_second=100, reply_tokens=40)
    spec = RoundSpec(prompt="Décris une robe rouge.", system="Tu es concis.",
                     options={"temperature": 0.1, "top_k": 10}, seed=1234, warm_up=False)
    snaps = by_slot(run_to_end(ComparisonRun(spec, four, clients, record_metrics=False)))
    assert [s.status for s in snaps.values()] == ["done"] * 4
    assert standin.state.max_in_flight == 4  # the four streams were open at once, not one after the other
    for slot, model in zip("ABCD", MODELS, strict=True):
        snap = snaps[slot]
        assert snap.model == model
        assert snap.content.endswith("END.")
        assert snap.digest and snap.ollama_version == "0.33.0"
        assert snap.stats is not None and snap.stats.eval_count >= 40
        assert snap.first_token_s is not None and snap.first_token_s <= snap.elapsed_s
        # The figure shown once done is Ollama's own (eval_count / eval_duration), not a clock of ours.
        assert snap.tokens_per_s == snap.stats.tokens_per_second
    chats = standin.state.requests_to("/api/chat")
    assert sorted(r["body"]["model"] for r in chats) == sorted(MODELS)
    for request in chats:
        assert request["body"]["options"] == {"temperature": 0.1, "top_k": 10, "seed": 1234}
        assert request["body"]["messages"][0] == {"role": "system", "content": "Tu es concis."}


def test_a_slow_column_does_not_delay_the_others(
        standin: StandinServer, four: list[Contestant], clients: Clients) -> None:
    # phi3:mini at 1 token/s needs 30 s: the three others finish long before, while it still streams.
    standin.state.configure(tokens_per_second=200, reply_tokens=30, model_tokens_per_second={"phi3:mini": 1})
    run = ComparisonRun(RoundSpec(prompt="Classe ce produit.", warm_up=False), four, clients, record_metrics=False)
    frames = run.frames()
    done: set[str] = set()
    for snaps in frames:
        done |= {snap.slot for snap in snaps if snap.status == "done"}
        if len(done) == 3:
            break
    slow = by_slot(run.snapshots())["C"]
    frames.close()
    assert done == {"A", "B", "D"}
    assert slow.status in ("waiting", "streaming") and slow.chunks < 30
    assert by_slot(run.snapshots())["C"].status == "stopped"


def test_a_failing_and_a_missing_model_get_their_own_errors(
        standin: StandinServer, four: list[Contestant], clients: Clients, backend: Backend) -> None:
    standin.state.configure(tokens_per_second=200, reply_tokens=20, fault_after=4,
                            model_faults={"qwen3:0.6b": "inband"})
    lineup = [*four[:3], Contestant("D", "mistral:7b", backend)]
    snaps = by_slot(run_to_end(ComparisonRun(RoundSpec(prompt="Traduis.", warm_up=False), lineup, clients,
                                             record_metrics=False)))
    assert snaps["A"].status == snaps["C"].status == "done"
    assert snaps["B"].status == "error" and "runner process has terminated" in snaps["B"].error
    assert snaps["B"].content or snaps["B"].thinking  # the partial output is kept
    assert snaps["D"].status == "error" and "mistral:7b is not installed on backend standin" in snaps["D"].error


def test_with_warm_up_a_missing_model_is_never_loaded(
        standin: StandinServer, four: list[Contestant], clients: Clients, backend: Backend) -> None:
    lineup = [*four[:2], Contestant("C", "mistral:7b", backend)]
    snaps = by_slot(run_to_end(ComparisonRun(RoundSpec(prompt="Traduis.", warm_up=True), lineup, clients,
                                             record_metrics=False)))
    assert snaps["A"].status == snaps["B"].status == "done"
    assert snaps["C"].status == "error" and "mistral:7b is not installed on backend standin" in snaps["C"].error
    sent = [r["body"]["model"] for r in standin.state.requests if r["path"] in ("/api/chat", "/api/generate")]
    assert "mistral:7b" not in sent


def test_a_stalled_column_does_not_stall_the_others(
        standin: StandinServer, four: list[Contestant], clients: Clients) -> None:
    # llama3.2:1b stops sending for a minute after three tokens: the others end while it is still silent.
    standin.state.configure(tokens_per_second=200, reply_tokens=20, fault_after=3, stall_s=60,
                            model_faults={"llama3.2:1b": "stall"})
    run = ComparisonRun(RoundSpec(prompt="Mappe ces colonnes.", warm_up=False), four, clients,
                        record_metrics=False)
    frames = run.frames()
    for snaps in frames:
        if sum(s.status == "done" for s in snaps) == 3:
            break
    stalled = by_slot(run.snapshots())["A"]
    frames.close()
    assert stalled.status in ("waiting", "streaming") and stalled.chunks <= 3
    assert by_slot(run.snapshots())["A"].status == "stopped"


def test_stopping_aborts_every_stream(standin: StandinServer, four: list[Contestant], clients: Clients) -> None:
    standin.state.configure(tokens_per_second=20, reply_tokens=400)
    run = ComparisonRun(RoundSpec(prompt="Écris longuement.", warm_up=False), four, clients,
                        record_metrics=False)
    frames = run.frames()
    for snaps in frames:
        if all(s.chunks >= 2 for s in snaps):
            break
    frames.close()  # what a Stop click does to the page's loop
    snaps = run.snapshots()
    assert [s.status for s in snaps] == ["stopped"] * 4
    assert all(s.content or s.thinking for s in snaps)
    deadline = time.monotonic() + 3
    while standin.state.disconnects < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert standin.state.disconnects == 4


def test_warm_up_keeps_the_load_out_of_the_timing(
        standin: StandinServer, four: list[Contestant], clients: Clients) -> None:
    standin.state.configure(tokens_per_second=200, reply_tokens=10, load_delay_s=1.0)
    snaps = run_to_end(ComparisonRun(RoundSpec(prompt="Bonjour", warm_up=True), four, clients,
                                     record_metrics=False))
    for snap in snaps:
        assert snap.status == "done"
        assert snap.warmup_s is not None and snap.warmup_s >= 1.0
        # Ollama's own counter says the timed request loaded nothing: the load went to the warm-up.
        assert not snap.cold_start and snap.stats is not None and snap.stats.load_duration_ns == 0
    assert len([r for r in standin.state.requests_to("/api/generate") if not r["body"].get("prompt")]) == 4


def test_without_warm_up_a_cold_load_is_marked(
        standin: StandinServer, four: list[Contestant], clients: Clients) -> None:
    standin.state.configure(tokens_per_second=200, reply_tokens=10, load_delay_s=0.6)
    standin.state.mark_loaded("llama3.2:1b", "5m")
    snaps = by_slot(run_to_end(ComparisonRun(RoundSpec(prompt="Bonjour", warm_up=False), four, clients,
                                             record_metrics=False)))
    assert not snaps["A"].cold_start and snaps["A"].warmup_s is None
    for slot in "BCD":
        assert snaps[slot].cold_start and snaps[slot].load_s >= 0.6
        assert snaps[slot].first_token_s is not None and snaps[slot].first_token_s >= 0.6


def test_models_on_different_backends(standin: StandinServer, backend: Backend, clients: Clients) -> None:
    with StandinServer() as other:
        second = Backend(name="gpu-box", kind="ollama", url=other.url)
        lineup = [Contestant("A", "llama3.2:1b", backend), Contestant("B", "llama3.2:1b", second),
                  Contestant("C", "phi3:mini", second)]
        snaps = by_slot(run_to_end(ComparisonRun(RoundSpec(prompt="Salut", warm_up=False), lineup, clients,
                                                 record_metrics=False)))
        assert [s.status for s in snaps.values()] == ["done"] * 3
        assert snaps["B"].backend == "gpu-box"
        assert [r["body"]["model"] for r in other.state.requests_to("/api/chat")].count("llama3.2:1b") == 1
        assert len(standin.state.requests_to("/api/chat")) == 1


def test_an_unreachable_backend_fails_only_its_column(
        backend: Backend, dead_backend: Backend, clients: Clients) -> None:
    lineup = [Contestant("A", "llama3.2:1b", backend), Contestant("B", "llama3.2:1b", dead_backend)]
    snaps = by_slot(run_to_end(ComparisonRun(RoundSpec(prompt="Salut", warm_up=True), lineup, clients,
                                             record_metrics=False)))
    assert snaps["A"].status == "done"
    assert snaps["B"].status == "error" and "not reachable" in snaps["B"].error


@pytest.mark.parametrize("count", [1, 5])
def test_lineup_size_is_two_to_four(backend: Backend, clients: Clients, count: int) -> None:
    lineup = [Contestant(s, f"m{i}:latest", backend) for i, s in enumerate("ABCDE"[:count])]
    with pytest.raises(InvalidInput, match="2 to 4"):
        ComparisonRun(RoundSpec(prompt="x"), lineup, clients)


def test_bad_rounds_are_refused_before_any_request(standin: StandinServer, backend: Backend,
                                                   clients: Clients) -> None:
    pair = [Contestant("A", "llama3.2:1b", backend), Contestant("B", "phi3:mini", backend)]
    with pytest.raises(InvalidInput, match="prompt"):
        ComparisonRun(RoundSpec(prompt="   "), pair, clients)
    with pytest.raises(InvalidInput, match="twice"):
        ComparisonRun(RoundSpec(prompt="x"), [pair[0], Contestant("B", "llama3.2:1b", backend)], clients)
    with pytest.raises(InvalidInput, match="not a valid model name"):
        ComparisonRun(RoundSpec(prompt="x"), [pair[0], Contestant("B", "../etc", backend)], clients)
    assert standin.state.requests == []


def test_stop_from_another_thread_ends_the_loop_and_every_stream(
        standin: StandinServer, four: list[Contestant], clients: Clients) -> None:
    """What happens when a click starts the next script run while the interrupted one still loops."""
    import threading

    standin.state.configure(tokens_per_second=20, reply_tokens=400)
    run = ComparisonRun(RoundSpec(prompt="Écris longuement.", warm_up=False), four, clients, record_metrics=False)
    seen: list[list[str]] = []
    loop = threading.Thread(target=lambda: seen.extend([s.status for s in snaps] for snaps in run.frames()))
    loop.start()
    deadline = time.monotonic() + 5
    while not (seen and all(status == "streaming" for status in seen[-1])) and time.monotonic() < deadline:
        time.sleep(0.02)
    snaps = run.stop()
    loop.join(3)
    assert not loop.is_alive()
    assert [s.status for s in snaps] == ["stopped"] * 4 and seen[-1] == ["stopped"] * 4
    deadline = time.monotonic() + 3
    while standin.state.disconnects < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert standin.state.disconnects == 4
