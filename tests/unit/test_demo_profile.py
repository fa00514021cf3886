"""The `make demo` host: every product-studio task passes the shipped templates' checks at the first attempt,
structured answers stay inside their enum, chat answers in French, a thinking and a vision model are there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.config import Backend
from services.ollama.client import OllamaClient
from services.studio.engine import run_task
from services.studio.tasks import TaskParams
from services.studio.templates import TemplateStore
from tests.standin import StandinServer

PRODUCTS = {
    "description": {"product_type": "robe", "name": "Robe Lina", "colour": "bleu nuit", "material": "crêpe de soie",
                    "occasion": "soirée"},
    "extraction": {"text": "Bouilloire électrique Alto en inox brossé, 1,7 L, 2200 W, arrêt automatique. 49,90 €"},
    "classification": {"name": "Robe de soirée Lina", "description": "Robe longue en crêpe de soie bleu nuit"},
    "translation": {"text": "La robe Lina en crêpe de soie bleu nuit dessine une silhouette fluide."},
    "column_mapping": {"headers": ["Désignation", "Prix TTC", "Code EAN", "Descriptif"],
                       "sample": "Désignation;Prix TTC;Code EAN;Descriptif\nRobe Lina;89,90;3700000000017;Robe"},
}


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[OllamaClient, StandinServer]]:
    with StandinServer() as server:
        server.state.apply_profile("demo")
        server.state.configure(tokens_per_second=2000, model_tokens_per_second={}, model_load_delay_s={},
                               load_delay_s=0.0)
        client = OllamaClient(Backend(name="demo", kind="ollama", url=server.url))
        yield client, server
        client.close()


@pytest.mark.parametrize("task", list(PRODUCTS))
def test_every_studio_task_passes_its_checks_at_the_first_attempt(demo: tuple[OllamaClient, StandinServer],
                                                                  tmp_path: Path, task: str) -> None:
    client, _ = demo
    template = TemplateStore(tmp_path).latest(task)
    language = "en" if task == "translation" else "fr"
    result = run_task(client, template, "llama3.2:3b", PRODUCTS[task], TaskParams(language=language))
    assert result.ok, result.error
    # One request per product; a classification chooses level by level: one request per level, none refused.
    requests = result.stats.get("requests", 1)
    assert result.attempts == requests and not result.repairs and not result.rejections, (
        result.attempts, result.repairs, result.raw)
    if task == "classification":
        assert result.output.startswith("Apparel & Accessories > Clothing > Dresses") and requests <= 3


def test_the_demo_host_has_the_models_a_first_look_needs(demo: tuple[OllamaClient, StandinServer]) -> None:
    client, server = demo
    models = {m.name: m for m in client.tags()}
    assert {"thinking"} <= set(models["qwen3:1.7b"].capabilities)
    assert {"vision"} <= set(models["gemma3:4b"].capabilities)
    assert "embedding" in models["nomic-embed-text:latest"].capabilities
    assert len({m.family for m in models.values()}) >= 4
    assert server.state.config.model_load_delay_s == {}  # (sped up above; the profile itself has a slow one)
    reply = "".join(line.get("message", {}).get("content", "")
                    for line in client.chat("llama3.2:1b", [{"role": "user", "content": "Bonjour"}]))
    assert "Bonjour" in reply and "Ollama" in reply


def test_a_pull_takes_about_twenty_seconds() -> None:
    from tests.profiles import demo

    with StandinServer() as server:
        server.state.apply_profile("demo")
        weights = sum(size for _, size in server.state.registry["gemma2:2b"])
        assert 15 <= weights / server.state.config.pull_bytes_per_s <= 25
    assert demo.LOAD_S["mistral:7b"] > demo.LOAD_S.get("llama3.2:1b", 0.8)
