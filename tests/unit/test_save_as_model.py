"""Save as model against the stand-in's /api/create: names checked like pulls, existing names never replaced
silently, progress streamed, every attempt audited."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.access.audit import AuditLog
from services.db import Database
from services.errors import InvalidInput, ModelNotFound
from services.models.create import CreateProgress, create_model, existing_name, make_recipe, validate_new_name
from services.ollama.client import OllamaClient
from tests.standin import StandinServer


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    return AuditLog(Database.in_dir(tmp_path))


def test_names_are_checked_like_pulls_and_kept_local() -> None:
    assert validate_new_name(" Team/Desc-FR ") == "team/desc-fr:latest"
    assert validate_new_name("desc-fr:v1") == "desc-fr:v1"
    for bad in ("", "../etc/passwd", "a b", "x" * 300, "ollama.com/library/llama3:1b"):
        with pytest.raises(InvalidInput):
            validate_new_name(bad)
    with pytest.raises(InvalidInput, match="start from"):
        make_recipe("LLAMA3.2:1b", "llama3.2:1b", "", {})
    with pytest.raises(InvalidInput, match="at most 20,000"):
        make_recipe("desc", "llama3.2:1b", "x" * 20_001, {})


def test_the_recipe_keeps_the_modelfile_parameters_only() -> None:
    recipe = make_recipe("team/desc", "llama3.2:1b", "  Réponds en français.  ",
                         {"temperature": 0.1, "top_k": 10, "seed": None, "stop": ["FIN", "\n\n"], "think": True})
    assert recipe.parameters == {"temperature": 0.1, "top_k": 10, "stop": ["FIN", "\n\n"]}
    assert recipe.modelfile() == ('FROM llama3.2:1b\nPARAMETER temperature 0.1\nPARAMETER top_k 10\n'
                                  'PARAMETER stop "FIN"\nPARAMETER stop "\\n\\n"\nSYSTEM """Réponds en français."""')


def test_a_model_is_created_with_progress_and_audited(client: OllamaClient, standin: StandinServer,
                                                      audit: AuditLog) -> None:
    recipe = make_recipe("team/desc-fr:v1", "llama3.2:1b", "Réponds en français.", {"temperature": 0.2})
    seen: list[int] = []
    progress = create_model(client, audit, "ana", recipe, installed=[m.name for m in client.tags()],
                            on_progress=lambda p: seen.append(p.lines))
    assert progress.succeeded and seen == sorted(seen) and len(seen) == progress.lines >= 5
    assert "writing manifest" in progress.history
    assert "team/desc-fr:v1" in [m.name for m in client.tags()]
    shown = client.show("team/desc-fr:v1")
    assert shown["system"] == "Réponds en français." and "temperature" in shown["parameters"]
    body = standin.state.requests_to("/api/create")[-1]["body"]
    assert body == {"model": "team/desc-fr:v1", "from": "llama3.2:1b", "system": "Réponds en français.",
                    "parameters": {"temperature": 0.2}, "stream": True}
    [entry] = audit.query(action="create")
    assert (entry.who, entry.model, entry.outcome) == ("ana", "team/desc-fr:v1", "ok")
    assert entry.detail == "from llama3.2:1b, parameters temperature"


def test_an_existing_name_is_replaced_only_when_confirmed(client: OllamaClient, standin: StandinServer,
                                                          audit: AuditLog) -> None:
    installed = [m.name for m in client.tags()]
    assert existing_name("PHI3:mini", installed) == "phi3:mini"
    recipe = make_recipe("phi3:mini", "llama3.2:1b", "Be brief.", {})
    with pytest.raises(InvalidInput, match=r"phi3:mini already exists on standin\. Confirm to replace it"):
        create_model(client, audit, "ana", recipe, installed=installed)
    assert standin.state.requests_to("/api/create") == [] and audit.query() == []
    create_model(client, audit, "ana", recipe, installed=installed, replace=True)
    assert client.show("phi3:mini")["system"] == "Be brief."
    assert audit.query(action="create")[0].detail == "from llama3.2:1b, replacing phi3:mini"


def test_a_failed_create_is_audited_with_its_reason(client: OllamaClient, audit: AuditLog) -> None:
    recipe = make_recipe("team/x", "vanished:latest", "", {})
    with pytest.raises(ModelNotFound):
        create_model(client, audit, "ana", recipe, installed=[])
    [entry] = audit.query(action="create")
    assert entry.outcome.startswith("failed: Model not found")


def test_progress_is_bounded_and_reports_bytes_when_there_are() -> None:
    progress = CreateProgress()
    for index in range(1_000):
        progress.update({"status": f"writing layer {index}"})
    progress.update({"status": "quantizing F16 model to Q4_K_M", "total": 200, "completed": 50})
    assert len(progress.history) == 12 and progress.lines == 1_001 and progress.fraction == 0.25


def test_a_gateway_backend_cannot_create_models(standin: StandinServer) -> None:
    from services.config import Backend

    gateway = OllamaClient(Backend(name="gw", kind="gateway", url=standin.url, gateway_secret="s" * 32))
    with pytest.raises(InvalidInput, match="not available through the gateway backend gw"):
        list(gateway.create("team/x", from_model="llama3.2:1b"))
    assert standin.state.requests_to("/api/create") == []
