"""Save as model on the chat page (AppTest): created with progress, asked before replacing, audited, listed."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from components.session import IDENTITY_KEY, Identity
from services.access.audit import AuditLog
from services.db import Database
from tests.standin import StandinServer

pytestmark = pytest.mark.timeout(120)
CHAT = "pages/chat.py"
# The chat page draws its panels' widgets only while they are open.
PANELS = {"chat.params_open": True, "chat.save_open": True, "chat.menu_open": True}
OpenPage = Callable[..., AppTest]


def audit() -> AuditLog:
    return AuditLog(Database.in_dir(Path(os.environ["DASHBOARD_DATA_DIR"])))


def alerts(at: AppTest) -> str:
    return "\n".join(e.value for kind in ("error", "warning", "info", "success") for e in getattr(at, kind))


def test_an_admin_saves_the_setup_as_a_model_listed_everywhere(open_page: OpenPage, app_env: StandinServer) -> None:
    at = open_page(CHAT, session_state=PANELS)
    at.text_area(key="chat.system").set_value("Tu écris des fiches produit en français.").run()
    at.segmented_control(key="chat.preset").set_value("classification").run()
    at.text_input(key="chat.save.name").set_value("Team/Fiches-FR:v1").run()
    assert 'FROM llama3.2:1b\nPARAMETER temperature 0.1' in next(c.value for c in at.code)
    at = at.button(key="chat.save.go").click().run()
    assert not at.exception
    assert "Saved as **team/fiches-fr:v1**" in alerts(at).replace("\\", "")
    body = app_env.state.requests_to("/api/create")[-1]["body"]
    assert body["from"] == "llama3.2:1b" and body["system"] == "Tu écris des fiches produit en français."
    assert body["parameters"] == {"temperature": 0.1, "top_p": 0.5, "top_k": 10}
    assert "team/fiches-fr:v1" in at.selectbox(key="chat.model").options
    assert at.text_input(key="chat.save.name").value == ""
    [entry] = audit().query(action="create")
    assert (entry.who, entry.model, entry.outcome) == ("local", "team/fiches-fr:v1", "ok")
    at = at.button(key="chat.save.use").click().run()
    assert at.selectbox(key="chat.model").value == "team/fiches-fr:v1"
    at.switch_page("pages/models.py").run()
    names = next(d.value for d in at.dataframe if "ID" in d.value.columns)["Name"]
    assert "team/fiches-fr:v1" in list(names)


def test_an_existing_name_asks_before_replacing(open_page: OpenPage, app_env: StandinServer) -> None:
    at = open_page(CHAT, session_state=PANELS)
    at.text_input(key="chat.save.name").set_value("PHI3:mini").run()
    assert "phi3:mini** already exists on local. Saving replaces it" in alerts(at).replace("\\", "")
    assert not [b for b in at.button if b.key == "chat.save.go"]
    assert app_env.state.requests_to("/api/create") == []
    at = at.button(key="chat.save.replace_go").click().run()
    assert not at.exception
    assert app_env.state.requests_to("/api/create")[-1]["body"]["model"] == "phi3:mini"
    assert "replacing phi3:mini" in audit().query(action="create")[0].detail


def test_an_operator_cannot_save_a_model(app_env: StandinServer) -> None:
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app.py"), default_timeout=30)
    at.session_state[IDENTITY_KEY] = Identity("olga", "operator")
    at.session_state["chat.save_open"] = True
    at.session_state["chat.save.name"] = "team/mine"  # as if typed before the role changed
    at.run()
    at.switch_page(CHAT).run()
    assert not at.exception
    assert at.text_input(key="chat.save.name").disabled and at.button(key="chat.save.go").disabled
    assert any("Saving a model needs the admin role." in c.value for c in at.caption)
    assert app_env.state.requests_to("/api/create") == [] and audit().query(action="create") == []
