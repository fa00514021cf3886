"""Presets, options, the conversation and its exports."""

from __future__ import annotations

import json

import pytest

from services.chat.conversation import MAX_PROMPT_CHARS, Conversation, format_stats_line, validate_prompt
from services.errors import InvalidInput
from services.ollama.options import PRESETS, GenerationOptions, parse_stop_sequences, preset_for


def test_presets_are_the_seeds_table() -> None:
    assert PRESETS["classification"] == {"temperature": 0.1, "top_p": 0.5, "top_k": 10}
    assert PRESETS["enrichment"] == {"temperature": 0.7, "top_p": 0.9, "top_k": 40}
    assert PRESETS["creative"] == {"temperature": 1.0, "top_p": 0.95, "top_k": 50}
    for name, values in PRESETS.items():
        assert preset_for(values["temperature"], values["top_p"], values["top_k"]) == name
    assert preset_for(0.3, 0.9, 40) == "custom"


def test_unset_options_are_not_sent() -> None:
    options = GenerationOptions.from_preset("classification", seed=42).to_ollama()
    assert options == {"temperature": 0.1, "top_p": 0.5, "top_k": 10, "seed": 42}
    assert "num_ctx" not in options  # a different num_ctx would force a model reload


@pytest.mark.parametrize("field,value", [("temperature", 3.0), ("top_p", 1.5), ("top_k", 0), ("num_ctx", 10)])
def test_out_of_range_options_are_refused(field: str, value: float) -> None:
    with pytest.raises(InvalidInput, match=field):
        GenerationOptions(**{field: value}).validate()


def test_stop_sequences_one_per_line() -> None:
    assert parse_stop_sequences("###\n\n<|end|>\n\\n\\nUser:") == ["###", "<|end|>", "\n\nUser:"]


@pytest.mark.parametrize("prompt", [None, "", "   \n\t"])
def test_empty_prompt_is_refused(prompt: str | None) -> None:
    with pytest.raises(InvalidInput, match="Type a message"):
        validate_prompt(prompt)


def test_long_prompts_pass_and_huge_ones_are_refused() -> None:
    assert validate_prompt("x" * 20_000)
    with pytest.raises(InvalidInput, match="characters"):
        validate_prompt("x" * (MAX_PROMPT_CHARS + 1))


def test_history_skips_failed_and_unfinished_replies() -> None:
    conversation = Conversation(system_prompt="Be brief.")
    conversation.add_user("one")
    ok = conversation.start_assistant(model="m", digest="d", backend="b", options={})
    ok.content, ok.status = "reply one", "complete"
    conversation.add_user("two")
    failed = conversation.start_assistant(model="m", digest="d", backend="b", options={})
    failed.status, failed.error = "error", "boom"
    conversation.add_user("three")
    conversation.start_assistant(model="m", digest="d", backend="b", options={})  # streaming now
    assert conversation.messages_for_request() == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "reply one"},
        {"role": "user", "content": "two"},
        {"role": "user", "content": "three"},
    ]


def test_exports_carry_model_digest_options_and_timings() -> None:
    conversation = Conversation()
    conversation.add_user("Describe a red dress <b>now</b>")
    reply = conversation.start_assistant(model="llama3.2:1b", digest="abc123" * 10, backend="local",
                                         options={"temperature": 0.7})
    reply.content, reply.status = "A red dress.", "stopped"
    reply.stats = {"eval_count": 12, "eval_duration": 400_000_000, "tokens_per_second": 30.0,
                   "time_to_first_token_s": 0.25, "load_duration": 2_000_000_000, "total_duration": 3_000_000_000}
    document = json.loads(conversation.to_json())
    assert document["format"] == "ollama-dashboard-conversation/1"
    turn = document["turns"][1]
    assert turn["model"] == "llama3.2:1b" and turn["digest"].startswith("abc123")
    assert turn["options"] == {"temperature": 0.7} and turn["stats"]["eval_count"] == 12
    assert turn["status"] == "stopped"
    markdown = conversation.to_markdown()
    assert "A red dress." in markdown and "digest abc123abc123" in markdown and "Status: stopped" in markdown
    assert "cold start: model load 2.0 s" in markdown


def test_stats_line_reports_ollamas_own_figures() -> None:
    line = format_stats_line({"time_to_first_token_s": 0.42, "tokens_per_second": 31.25, "eval_count": 120,
                              "prompt_eval_count": 18, "load_duration": 100, "total_duration": 4_200_000_000,
                              "done_reason": "length"})
    assert line == ("first token 420 ms · 31.2 tokens/s · 120 tokens · prompt 18 tokens · total 4.20 s · "
                    "stopped at the token limit")
    assert format_stats_line({"time_to_first_token_s": 1.5, "prompt_eval_count": 1, "eval_count": 1}) == (
        "first token 1.50 s · 1 token · prompt 1 token")
