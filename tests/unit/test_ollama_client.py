"""The Ollama client against the loopback stand-in, over real sockets: parsing, errors, streams, faults."""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from services import errors
from services.config import Backend
from services.ollama.client import OllamaClient
from services.ollama.wire import ChatChunk, GenerationStats, LoadedModel, normalize_keep_alive, validate_model_name
from tests.standin import BUSY_MESSAGE, StandinServer

HELLO = [{"role": "user", "content": "hello there"}]


def consume(stream) -> list[dict]:
    return list(stream)


# ---- read-only endpoints -------------------------------------------------------------------------

def test_version_tags_and_show_parse_what_ollama_sends(client: OllamaClient, standin: StandinServer) -> None:
    assert client.version() == "0.33.0"
    models = {m.name: m for m in client.tags()}
    assert set(models) == set(standin.state.models)
    llama = models["llama3.2:1b"]
    assert llama.size == 1_321_098_329
    assert llama.family == "llama" and llama.parameter_size == "1.2B" and llama.quantization_level == "Q8_0"
    assert llama.short_digest == llama.digest[:12]
    assert llama.modified_at is not None and llama.modified_at.utcoffset() == timedelta(hours=1)
    shown = client.show("llama3.2:1b")
    assert shown["model_info"]["llama.context_length"] == 131072
    assert "completion" in shown["capabilities"]


def test_ps_reports_loaded_models_with_the_cli_split(client: OllamaClient) -> None:
    assert client.ps() == []
    client.load("llama3.2:1b", keep_alive="10m")
    (loaded,) = client.ps()
    assert loaded.name == "llama3.2:1b"
    assert loaded.processor == "40%/60% CPU/GPU"
    assert 590 < loaded.seconds_until_unload() <= 600
    client.unload("llama3.2:1b")
    assert client.ps() == []


def test_keep_alive_forever_reads_as_infinite(client: OllamaClient) -> None:
    client.load("phi3:mini", keep_alive=-1)
    (loaded,) = client.ps()
    assert loaded.seconds_until_unload() == math.inf


@pytest.mark.parametrize(
    ("size", "vram", "expected"),
    [(100, 100, "100% GPU"), (100, 0, "100% CPU"), (100, 52, "48%/52% CPU/GPU"), (0, 0, "100% CPU")],
)
def test_processor_split_matches_the_ollama_cli(size: int, vram: int, expected: str) -> None:
    model = LoadedModel(name="m", size=size, size_vram=vram, digest="", expires_at=None)
    assert model.processor == expected


def test_stopping_model_has_negative_time_left() -> None:
    past = datetime.now(UTC) - timedelta(seconds=3)
    assert LoadedModel("m", 1, 1, "", past).seconds_until_unload() < 0


# ---- errors ----------------------------------------------------------------------------------------

def test_unknown_model_is_model_not_found(client: OllamaClient) -> None:
    with pytest.raises(errors.ModelNotFound, match="not found") as caught:
        client.show("ghost:1b")
    assert caught.value.status_code == 404
    with pytest.raises(errors.ModelNotFound):
        consume(client.chat("ghost:1b", HELLO))


def test_plain_text_404_and_405_are_not_json(client: OllamaClient) -> None:
    with pytest.raises(errors.ResponseError) as caught:
        client._send("GET", "/api/nowhere")
    assert caught.value.status_code == 404 and caught.value.message == "404 page not found"
    assert not isinstance(caught.value, errors.ModelNotFound)
    with pytest.raises(errors.ResponseError) as caught:
        client._send("GET", "/api/chat")
    assert caught.value.status_code == 405 and "method not allowed" in caught.value.message


def test_busy_is_503_busy(client: OllamaClient, standin: StandinServer) -> None:
    standin.state.configure(fault="busy")
    with pytest.raises(errors.Busy) as caught:
        consume(client.chat("llama3.2:1b", HELLO))
    assert caught.value.status_code == 503 and caught.value.message == BUSY_MESSAGE


def test_capability_error_is_bad_request(client: OllamaClient) -> None:
    with pytest.raises(errors.BadRequest, match="does not support"):
        consume(client.chat("nomic-embed-text", HELLO))


def test_dead_backend_fails_in_seconds_as_unreachable(dead_backend: Backend) -> None:
    dead = OllamaClient(dead_backend, connect_timeout_s=2.0)
    with pytest.raises(errors.Unreachable) as caught:
        dead.tags()
    assert dead_backend.url in errors.user_message(caught.value)
    with pytest.raises(errors.Unreachable):
        consume(dead.chat("llama3.2:1b", HELLO))


@pytest.mark.parametrize(
    "name", ["", "   ", "llama 3", "../etc/passwd", "a/../b", "bad\x00name", "tab\tname", "x" * 10_000, ":tag"]
)
def test_invalid_model_names_never_reach_the_server(client: OllamaClient, standin: StandinServer, name: str) -> None:
    with pytest.raises(errors.InvalidInput):
        client.pull(name)
    with pytest.raises(errors.InvalidInput):
        client.delete(name)
    with pytest.raises(errors.InvalidInput):
        client.chat(name, HELLO)
    assert standin.state.requests == []


@pytest.mark.parametrize("name", ["llama3.2", "llama3.2:1b", "library/qwen2.5:0.5b", "hf.co/org/model:Q4_K_M",
                                  "registry.ollama.ai:443/library/phi3:mini"])
def test_valid_model_names_pass(name: str) -> None:
    assert validate_model_name(name) == name


@pytest.mark.parametrize(("value", "expected"), [(300, 300), ("300", 300), ("5m", "5m"), ("1h30m", "1h30m"),
                                                  ("-1", -1), ("forever", -1), (0, 0), ("0", 0)])
def test_keep_alive_is_sent_as_ollama_accepts_it(value: object, expected: object) -> None:
    assert normalize_keep_alive(value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["soon", "5 minutes", "", True])
def test_bad_keep_alive_is_refused(value: object) -> None:
    with pytest.raises(errors.InvalidInput):
        normalize_keep_alive(value)  # type: ignore[arg-type]


# ---- streams ---------------------------------------------------------------------------------------

def test_chat_stream_ends_with_the_final_counters(client: OllamaClient, standin: StandinServer) -> None:
    standin.state.configure(tokens_per_second=2000, reply_tokens=40)
    lines = consume(client.chat("llama3.2:1b", HELLO, options={"temperature": 0.1}))
    chunks = [ChatChunk.from_line(line) for line in lines]
    assert "".join(c.content for c in chunks).endswith("t0039 END.")
    final = lines[-1]
    assert final["done"] is True and final["done_reason"] == "stop"
    stats = GenerationStats.from_final(final)
    assert stats.eval_count == final["eval_count"] == 40
    assert stats.tokens_per_second == pytest.approx(final["eval_count"] / final["eval_duration"] * 1e9)
    body = standin.state.requests_to("/api/chat")[-1]["body"]
    assert body["stream"] is True and body["options"] == {"temperature": 0.1}


def test_zero_counters_are_omitted_and_read_as_zero(client: OllamaClient, standin: StandinServer) -> None:
    client.load("llama3.2:1b")
    final = consume(client.chat("llama3.2:1b", HELLO))[-1]
    assert "load_duration" not in final  # warm model: Ollama omits zero values
    client.unload("llama3.2:1b")
    standin.state.configure(load_delay_s=0.6)
    cold = GenerationStats.from_final(consume(client.chat("llama3.2:1b", HELLO))[-1])
    assert cold.cold_start and cold.load_s >= 0.6


def test_generate_stream_and_thinking(client: OllamaClient) -> None:
    lines = consume(client.generate("qwen3:0.6b", "why is the sky blue?"))
    thinking = "".join(ChatChunk.from_line(line).thinking for line in lines)
    content = "".join(ChatChunk.from_line(line).content for line in lines)
    assert thinking.startswith("Let me think") and "END." in content and "think" not in content


def test_split_and_blank_lines_are_reassembled(client: OllamaClient, standin: StandinServer) -> None:
    standin.state.configure(split_lines=True, blank_lines=True, reply_tokens=20, tokens_per_second=5000)
    lines = consume(client.chat("llama3.2:1b", HELLO))
    assert "".join(ChatChunk.from_line(line).content for line in lines).endswith("END.")
    assert lines[-1]["done"] is True


@pytest.mark.parametrize(
    ("fault", "error"),
    [("cut", errors.StreamInterrupted), ("cut_close", errors.StreamInterrupted),
     ("no_done", errors.StreamInterrupted), ("inband", errors.InBandError)],
)
def test_broken_streams_are_never_a_complete_answer(
    client: OllamaClient, standin: StandinServer, fault: str, error: type[Exception]
) -> None:
    standin.state.configure(fault=fault, fault_after=5, tokens_per_second=2000)
    received: list[dict] = []
    with pytest.raises(error):
        for line in client.chat("llama3.2:1b", HELLO):
            received.append(line)
    assert len(received) == (30 if fault == "no_done" else 5)
    assert not any(line.get("done") for line in received)


def test_inband_error_has_no_status(client: OllamaClient, standin: StandinServer) -> None:
    standin.state.configure(fault="inband", fault_message="llama runner process has terminated")
    with pytest.raises(errors.InBandError) as caught:
        consume(client.chat("llama3.2:1b", HELLO))
    assert caught.value.status_code == -1 and "terminated" in errors.user_message(caught.value)


def test_stall_after_headers_times_out_but_a_slow_load_does_not(standin: StandinServer, backend: Backend) -> None:
    client = OllamaClient(backend, load_timeout_s=120, stall_timeout_s=0.5)
    standin.state.configure(load_delay_s=1.2, tokens_per_second=2000)
    lines = consume(client.chat("llama3.2:1b", HELLO))  # 1.2 s cold load, longer than the stall timeout
    assert lines[-1]["done"]
    # A 60 s pause after three tokens, then the rest: a client waiting with the load timeout (120 s) would get
    # the whole reply; the stall timeout gives up first, so an error here means the stall timeout applied.
    standin.state.configure(fault="stall", stall_s=60, fault_after=3)
    with pytest.raises(errors.BackendTimeout):
        consume(client.chat("llama3.2:1b", HELLO))


def test_abort_from_another_thread_closes_the_connection(client: OllamaClient, standin: StandinServer) -> None:
    standin.state.configure(tokens_per_second=100, reply_tokens=1000)
    stream = client.chat("llama3.2:1b", HELLO)
    received: list[dict] = []

    def read() -> None:
        received.extend(stream)

    reader = threading.Thread(target=read)
    reader.start()
    deadline = time.monotonic() + 20
    while len(received) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    stream.abort()
    reader.join(2)
    assert not reader.is_alive()
    assert len(received) < 100
    deadline = time.monotonic() + 2
    while standin.state.disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert standin.state.disconnects == 1


# ---- model management ------------------------------------------------------------------------------

def test_delete_and_copy_succeed_on_empty_bodies(client: OllamaClient) -> None:
    client.copy("llama3.2:1b", "my-alias")
    assert "my-alias:latest" in {m.name for m in client.tags()}
    client.delete("my-alias")
    assert "my-alias:latest" not in {m.name for m in client.tags()}
    with pytest.raises(errors.ModelNotFound):
        client.delete("my-alias")
    with pytest.raises(errors.ModelNotFound):
        client.copy("ghost", "other")


def test_pull_streams_progress_per_layer(client: OllamaClient, standin: StandinServer) -> None:
    standin.state.configure(pull_bytes_per_s=2_000_000_000, pull_interval_s=0.001)
    lines = consume(client.pull("gemma2:2b"))
    statuses = [line["status"] for line in lines]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert "verifying sha256 digest" in statuses and "writing manifest" in statuses
    layer_digests = {line["digest"] for line in lines if "digest" in line}
    assert len(layer_digests) == 4
    assert "gemma2:2b" in {m.name for m in client.tags()}


def test_pull_of_an_unknown_name_fails_in_band(client: OllamaClient) -> None:
    with pytest.raises(errors.ModelNotFound, match="file does not exist"):
        consume(client.pull("no-such-model:7b"))


def test_embed_returns_normalised_vectors(client: OllamaClient) -> None:
    vectors = client.embed("nomic-embed-text", ["a", "b"])
    assert len(vectors) == 2
    assert sum(v * v for v in vectors[0]) == pytest.approx(1.0)


def test_cloud_backend_sends_its_key_and_local_sends_none(standin: StandinServer) -> None:
    cloud = OllamaClient(Backend("cloud", "ollama-cloud", standin.url, api_key="sk-test"))
    local = OllamaClient(Backend("local", "ollama", standin.url, api_key="sk-test"))
    cloud.tags()
    local.tags()
    first, second = standin.state.requests_to("/api/tags")
    assert first["headers"]["authorization"] == "Bearer sk-test"
    assert "authorization" not in second["headers"]
