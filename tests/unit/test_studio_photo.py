"""The product studio's optional photo: sent with the prompt to a vision model, refused for others."""

from __future__ import annotations

import io

from PIL import Image

from services.images import clean_image
from services.ollama.client import OllamaClient
from services.studio.engine import PHOTO_NOTE, build_request, run_task
from services.studio.tasks import TaskParams
from services.studio.templates import TemplateStore
from tests.standin import StandinServer

FIELDS = {"product_type": "robe de soirée", "colour": "rouge"}


def photo() -> str:
    out = io.BytesIO()
    Image.new("RGB", (800, 1000), (180, 20, 40)).save(out, "JPEG")
    return clean_image(out.getvalue(), "robe.jpg").base64()


def test_the_photo_goes_with_the_prompt_and_the_fields(tmp_path) -> None:
    template = TemplateStore(tmp_path).latest("description")
    plain = build_request(template, FIELDS, TaskParams())
    with_photo = build_request(template, FIELDS, TaskParams(), images=[photo()])
    assert "images" not in plain.messages[-1]
    prompt = with_photo.messages[-1]
    assert prompt["content"] == plain.messages[-1]["content"] + "\n\n" + PHOTO_NOTE
    assert len(prompt["images"]) == 1 and "robe de soirée" in prompt["content"]


def test_a_vision_model_gets_the_photo_and_another_model_refuses_it(client: OllamaClient, standin: StandinServer,
                                                                    tmp_path) -> None:
    standin.state.apply_profile("vision")
    standin.state.configure(replies={"Product data": "Une robe rouge élégante pour vos soirées."})
    template = TemplateStore(tmp_path).latest("description")
    result = run_task(client, template, "gemma3:4b", FIELDS, TaskParams(), images=[photo()])
    assert result.ok, result.error
    assert standin.state.requests_to("/api/chat")[-1]["body"]["messages"][-1]["images"]
    refused = run_task(client, template, "llama3.2:1b", FIELDS, TaskParams(), images=[photo()])
    assert not refused.ok and "does not support vision" in refused.error and refused.attempts == 1
