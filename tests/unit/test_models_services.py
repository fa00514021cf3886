"""Model actions against the stand-in (audited, names checked first) and the page's data helpers."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services import format as fmt
from services.access.audit import AuditLog
from services.db import Database
from services.errors import InvalidInput, ModelNotFound
from services.models.operations import (
    ModelDetail,
    copy_model,
    delete_model,
    filter_and_sort,
    installed_rows,
    load_model,
    loaded_rows,
    model_matrix,
    unload_model,
)
from services.ollama.client import OllamaClient
from services.ollama.wire import InstalledModel, LoadedModel
from tests.standin import StandinServer


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    return AuditLog(Database.in_dir(tmp_path))


def test_load_then_unload_shows_in_ps_and_audit(client: OllamaClient, audit: AuditLog) -> None:
    load_model(client, audit, "alice", "llama3.2:1b", "forever")
    [loaded] = client.ps()
    assert loaded.name == "llama3.2:1b" and math.isinf(loaded.seconds_until_unload() or 0)
    assert loaded_rows([loaded])[0]["until_unload"] == "forever"
    assert loaded_rows([loaded])[0]["processor"] == "40%/60% CPU/GPU"
    unload_model(client, audit, "alice", "llama3.2:1b")
    assert client.ps() == []
    assert [(e.action, e.outcome, e.detail) for e in audit.query()] == [
        ("unload", "ok", ""), ("load", "ok", "keep_alive=-1")]


def test_load_failure_is_audited_and_raised(client: OllamaClient, audit: AuditLog) -> None:
    with pytest.raises(ModelNotFound):
        load_model(client, audit, "alice", "ghost:1b", "5m")
    assert audit.query()[0].outcome.startswith("failed: Model not found")


def test_delete_needs_the_typed_name_and_reports_already_deleted(client: OllamaClient, audit: AuditLog,
                                                                standin: StandinServer) -> None:
    with pytest.raises(InvalidInput, match="exact name"):
        delete_model(client, audit, "root", "phi3:mini", "phi3")
    assert standin.state.requests_to("/api/delete") == []
    assert delete_model(client, audit, "root", "phi3:mini", "phi3:mini") == "deleted"
    assert "phi3:mini" not in standin.state.models
    assert delete_model(client, audit, "root", "phi3:mini", "phi3:mini") == "already deleted"
    assert [e.outcome for e in audit.query(action="delete")] == ["already deleted", "ok"]


def test_copy_creates_an_alias(client: OllamaClient, audit: AuditLog, standin: StandinServer) -> None:
    assert copy_model(client, audit, "root", "qwen3:0.6b", "team/qwen-small") == "team/qwen-small"
    assert "team/qwen-small:latest" in {m.name for m in client.tags()}
    assert audit.query()[0].detail == "to team/qwen-small"
    with pytest.raises(InvalidInput, match="same"):
        copy_model(client, audit, "root", "qwen3:0.6b", "qwen3:0.6b")


@pytest.mark.parametrize("name", ["has space", "../x", "a\x07b", "y" * 10_240])
def test_invalid_names_never_reach_the_server(client: OllamaClient, audit: AuditLog, standin: StandinServer,
                                              name: str) -> None:
    before = len(standin.state.requests)
    for call in (lambda: load_model(client, audit, "a", name, "5m"), lambda: unload_model(client, audit, "a", name),
                 lambda: delete_model(client, audit, "a", name, name),
                 lambda: copy_model(client, audit, "a", "qwen3:0.6b", name)):
        with pytest.raises(InvalidInput):
            call()
    assert len(standin.state.requests) == before
    assert audit.query() == []


def test_installed_rows_filter_and_sort(client: OllamaClient) -> None:
    rows = installed_rows(client.tags())
    assert [r["name"] for r in filter_and_sort(rows, sort="size", descending=True)] == [
        "phi3:mini", "llama3.2:1b", "qwen3:0.6b", "nomic-embed-text:latest"]
    assert [r["name"] for r in filter_and_sort(rows, "Q4_")] == ["phi3:mini", "qwen3:0.6b"]
    assert [r["name"] for r in filter_and_sort(rows, "qwen")] == ["qwen3:0.6b"]
    assert rows[0]["digest"] == client.tags()[0].digest[:12]


def test_detail_from_show(client: OllamaClient) -> None:
    detail = ModelDetail.from_show(client.show("llama3.2:1b"))
    assert detail.context_length == 131072 and detail.architecture == "llama"
    assert ("temperature", "0.7") in detail.parameters
    assert "completion" in detail.capabilities and detail.system


def test_matrix_flags_digest_differences() -> None:
    def m(name: str, digest: str) -> InstalledModel:
        return InstalledModel(name=name, size=1, digest=digest, modified_at=None)

    rows = model_matrix({"gpu": [m("a:1", "aaa"), m("b:1", "bbb")], "cpu": [m("a:1", "zzz")], "cloud": None})
    assert rows == [{"model": "a:1", "gpu": "aaa", "cpu": "zzz", "cloud": "?", "differs": True},
                    {"model": "b:1", "gpu": "bbb", "cpu": "—", "cloud": "?", "differs": False}]


def test_countdown_formatting() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    model = LoadedModel(name="m", size=10, size_vram=10, digest="d", expires_at=now + timedelta(seconds=125))
    assert loaded_rows([model], now)[0]["until_unload"] == "2 min 05 s"
    assert loaded_rows([model], now + timedelta(seconds=200))[0]["until_unload"] == "stopping…"
    assert fmt.duration(3 * 3600 + 60) == "3 h 01 min"
