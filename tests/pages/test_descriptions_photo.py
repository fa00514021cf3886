"""The product studio's single mode with a product photo (AppTest against the stand-in's vision model)."""

from __future__ import annotations

import io
from collections.abc import Callable

from PIL import Image
from streamlit.testing.v1 import AppTest

from tests.standin import StandinServer

PAGE = "pages/descriptions.py"
REPLY = "Une robe de soirée rouge, longue et fluide, au tombé élégant."


def photo(fmt: str = "JPEG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (900, 1200), (180, 20, 40)).save(out, fmt)
    return out.getvalue()


def fill(at: AppTest, model: str) -> AppTest:
    at.selectbox(key="studio.single.model").set_value(model).run()
    at.text_input(key="studio.single.description.product_type").set_value("robe de soirée").run()
    return at


def test_a_photo_goes_to_a_vision_model_with_the_fields(open_page: Callable[..., AppTest],
                                                        app_env: StandinServer) -> None:
    app_env.state.apply_profile("vision")
    app_env.state.configure(replies={"Product data": REPLY})
    at = fill(open_page(PAGE), "gemma3:4b")
    at.file_uploader(key="studio.single.photo").upload("robe.jpg", photo(), "image/jpeg").run()
    assert not at.error and len(at.get("image")) == 1  # the thumbnail of the checked photo
    at.button(key="studio.single.go").click().run()
    assert not at.exception and not at.error
    prompt = app_env.state.requests_to("/api/chat")[-1]["body"]["messages"][-1]
    assert "robe de soirée" in prompt["content"] and "A photo of the product is attached" in prompt["content"]
    assert len(prompt["images"]) == 1
    assert any(c.value == REPLY for c in at.code)


def test_a_photo_for_a_model_without_vision_is_refused_with_the_reason(open_page: Callable[..., AppTest],
                                                                       app_env: StandinServer) -> None:
    app_env.state.apply_profile("vision")
    at = fill(open_page(PAGE), "llama3.2:1b")
    at.file_uploader(key="studio.single.photo").upload("robe.jpg", photo(), "image/jpeg").run()
    assert "llama3.2:1b cannot read pictures (it has no vision capability)" in at.error[0].value
    assert at.button(key="studio.single.go").disabled
    assert app_env.state.requests_to("/api/chat") == []


def test_a_pdf_renamed_as_a_photo_is_refused(open_page: Callable[..., AppTest], app_env: StandinServer) -> None:
    app_env.state.apply_profile("vision")
    at = fill(open_page(PAGE), "gemma3:4b")
    at.file_uploader(key="studio.single.photo").upload("robe.png", b"%PDF-1.7\n...", "image/png").run()
    assert "robe.png is a PDF document, not a picture." in at.error[0].value
    assert at.button(key="studio.single.go").disabled
