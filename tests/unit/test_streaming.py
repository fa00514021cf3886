"""Coalesced, honestly measured stream updates; Stop closes the connection; metrics count every outcome."""

from __future__ import annotations

import time

import pytest

from services import errors, metrics
from services.errors import StreamFailed
from services.ollama.client import OllamaClient
from services.ollama.stream import stream_updates
from tests.standin import StandinServer

HELLO = [{"role": "user", "content": "hello"}]


def requests_count(model: str, status: str) -> float:
    return metrics.sample("ai_requests_total", {"status": status, "model": model})


def test_updates_are_coalesced_and_the_final_one_carries_ollamas_counters(
    client: OllamaClient, standin: StandinServer
) -> None:
    standin.state.configure(tokens_per_second=1000, reply_tokens=600)
    before = requests_count("llama3.2:1b", "success")
    updates = [(u.content, u.done, u.stats) for u in stream_updates(client.chat("llama3.2:1b", HELLO),
                                                                   model="llama3.2:1b", interval_s=0.05)]
    content, done, stats = updates[-1]
    assert done and content.endswith("t0599 END.")
    # 600 tokens over ~0.6 s at one update per 50 ms: a few dozen updates, not 600.
    assert len(updates) < 60
    assert stats is not None and stats.eval_count == 600
    raw_final = standin.state.requests_to("/api/chat")  # the request went out once
    assert len(raw_final) == 1
    assert stats.tokens_per_second == pytest.approx(stats.eval_count / stats.eval_duration_ns * 1e9)
    assert stats.time_to_first_token_s is not None and stats.time_to_first_token_s < stats.wall_time_s
    assert requests_count("llama3.2:1b", "success") == before + 1


def test_first_token_is_emitted_at_once_not_after_the_interval(client: OllamaClient, standin: StandinServer) -> None:
    standin.state.configure(tokens_per_second=5, reply_tokens=3)
    stream = stream_updates(client.chat("phi3:mini", HELLO), model="phi3:mini", interval_s=10.0)
    first_text = next(u for u in stream if u.content)
    # The whole reply takes 0.6 s: an update held for the 10 s interval would carry all of it, finished.
    assert first_text.content == "t0001 " and not first_text.done
    stream.close()


def test_waiting_for_a_cold_load_yields_heartbeats(client: OllamaClient, standin: StandinServer) -> None:
    standin.state.configure(load_delay_s=0.8, reply_tokens=3, tokens_per_second=1000)
    updates = list(stream_updates(client.chat("phi3:mini", HELLO), model="phi3:mini", heartbeat_s=0.1))
    waiting = [u for u in updates if u.waiting]
    assert len(waiting) >= 4
    assert updates[-1].stats is not None and updates[-1].stats.cold_start


def test_closing_the_generator_aborts_the_stream_and_counts_a_stop(
    client: OllamaClient, standin: StandinServer
) -> None:
    standin.state.configure(tokens_per_second=200, reply_tokens=5000)
    before = requests_count("qwen3:0.6b", "stopped")
    stream = stream_updates(client.chat("qwen3:0.6b", HELLO), model="qwen3:0.6b")
    for update in stream:
        if update.chunks > 20:
            break
    stream.close()
    deadline = time.monotonic() + 3
    while standin.state.disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert standin.state.disconnects == 1
    assert requests_count("qwen3:0.6b", "stopped") == before + 1


def test_failure_keeps_the_partial_reply_and_counts_an_error(client: OllamaClient, standin: StandinServer) -> None:
    standin.state.configure(fault="inband", fault_after=7, tokens_per_second=1000)
    before = requests_count("llama3.2:1b", "error")
    with pytest.raises(StreamFailed) as caught:
        for _ in stream_updates(client.chat("llama3.2:1b", HELLO), model="llama3.2:1b"):
            pass
    assert isinstance(caught.value.cause, errors.InBandError)
    assert caught.value.partial.content == "".join(f"t{i:04d} " for i in range(1, 8))
    assert requests_count("llama3.2:1b", "error") == before + 1


def test_unknown_model_fails_before_any_output(client: OllamaClient) -> None:
    with pytest.raises(StreamFailed) as caught:
        list(stream_updates(client.chat("ghost:1b", HELLO), model="ghost:1b"))
    assert isinstance(caught.value.cause, errors.ModelNotFound)
    assert caught.value.partial.content == ""


def test_thinking_is_kept_apart_from_the_answer(client: OllamaClient) -> None:
    final = list(stream_updates(client.chat("qwen3:0.6b", HELLO), model="qwen3:0.6b"))[-1]
    assert final.thinking.startswith("Let me think") and "think" not in final.content
    assert final.stats is not None and final.stats.eval_count == 36  # Ollama counts thinking tokens too
