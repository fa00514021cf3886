"""AppTest of the Models and Audit pages, run through app.py against the loopback stand-in."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from components.session import IDENTITY_KEY, Identity
from services import format as fmt
from services.access.audit import AuditLog
from services.db import Database
from tests.standin import StandinServer

pytestmark = pytest.mark.timeout(120)
OpenPage = Callable[..., AppTest]


def audit_entries() -> list:
    return AuditLog(Database.in_dir(Path(os.environ["DASHBOARD_DATA_DIR"]))).query()


def texts(at: AppTest) -> str:
    return "\n".join([t.value for t in at.text] + [m.value for m in at.markdown] + [c.value for c in at.caption])


def installed(at: AppTest) -> pd.DataFrame:
    """The installed-models table (the one with an ID column)."""
    [frame] = [d.value for d in at.dataframe if "ID" in d.value.columns]
    return frame


def messages(at: AppTest, kind: str) -> list[str]:
    return [e.value for e in getattr(at, kind)]


def test_lists_match_tags_and_ps(open_page: OpenPage, app_env: StandinServer) -> None:
    app_env.state.mark_loaded("llama3.2:1b", -1)
    app_env.state.mark_loaded("qwen3:0.6b", "10m")
    at = open_page("pages/models.py")
    assert not at.exception
    table = installed(at)
    tags = sorted(app_env.state.models)
    assert list(table["Name"]) == tags
    assert list(table["ID"]) == [app_env.state.models[n]["digest"][:12] for n in tags]
    total = sum(r["size"] for r in app_env.state.models.values())
    assert [m.value for m in at.metric][:2] == [str(len(tags)), fmt.size(total)]
    page_text = texts(at)
    for name in ("llama3.2:1b", "qwen3:0.6b"):
        assert name in [t.value for t in at.text]
    assert "40%/60% CPU/GPU" in page_text and "forever" in page_text
    assert "9 min 5" in page_text  # the 10 minute keep-alive, counting down
    assert [b.key for b in at.button if b.key and b.key.startswith("models.unload.")] == [
        "models.unload.llama3.2:1b", "models.unload.qwen3:0.6b"]


def test_filter_and_sort(open_page: OpenPage) -> None:
    at = open_page("pages/models.py")
    at.text_input(key="models.filter").input("q4_").run()
    assert list(installed(at)["Name"]) == ["phi3:mini", "qwen3:0.6b"]
    at.text_input(key="models.filter").input("").run()
    at.selectbox(key="models.sort").set_value("Size (largest first)").run()
    assert installed(at)["Name"].iloc[0] == "phi3:mini"


@pytest.mark.parametrize("name", ["bad name", "../../etc/passwd", "llama\x01:1b", "x" * 10_240])
def test_invalid_pull_names_never_reach_the_server(open_page: OpenPage, app_env: StandinServer, name: str) -> None:
    at = open_page("pages/models.py")
    at.text_input(key="models.pull_name").input(name).run()
    at.button(key="models.pull").click().run()
    assert not at.exception
    errors = messages(at, "error")
    assert errors and ("not a valid model name" in errors[0] or "too long" in errors[0])
    assert app_env.state.requests_to("/api/pull") == []
    at.selectbox(key="models.selected").set_value("qwen3:0.6b").run()
    at.text_input(key="models.copy_to").input(name).run()
    at.button(key="models.copy").click().run()
    assert messages(at, "error") and app_env.state.requests_to("/api/copy") == []


def test_pull_from_the_page_shows_progress_then_the_model(open_page: OpenPage, app_env: StandinServer) -> None:
    app_env.state.configure(pull_bytes_per_s=4_000_000)
    at = open_page("pages/models.py")
    at.text_input(key="models.pull_name").input("qwen2.5:0.5b").run()
    at.button(key="models.pull").click().run()
    assert "Pulling qwen2.5:0.5b" in messages(at, "success")[0]
    assert at.text_input(key="models.pull_name").value == ""
    assert [b.key for b in at.button if b.key and b.key.startswith("models.cancel.")]
    # A second operator asking for the same model joins the running job.
    at.text_input(key="models.pull_name").input("qwen2.5:0.5b").run()
    at.button(key="models.pull").click().run()
    assert "already being pulled" in messages(at, "info")[0]
    deadline = time.monotonic() + 30
    while "qwen2.5:0.5b" not in app_env.state.models and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.3)
    at.run()
    assert "qwen2.5:0.5b" in list(installed(at)["Name"])
    assert len(app_env.state.requests_to("/api/pull")) == 1
    assert [e.outcome for e in audit_entries() if e.action == "pull"] == ["succeeded", "started"]


def test_cancel_from_the_page(open_page: OpenPage, app_env: StandinServer) -> None:
    app_env.state.configure(pull_bytes_per_s=500_000)
    at = open_page("pages/models.py")
    at.text_input(key="models.pull_name").input("mistral:7b").run()
    at.button(key="models.pull").click().run()
    [cancel] = [b for b in at.button if b.key and b.key.startswith("models.cancel.")]
    cancel.click().run()
    deadline = time.monotonic() + 5
    while not any(e.outcome.startswith("cancelled") for e in audit_entries()) and time.monotonic() < deadline:
        time.sleep(0.1)
    at.run()
    assert "cancelled" in texts(at)
    assert [b for b in at.button if b.key and b.key.startswith("models.retry.")]
    assert "mistral:7b" not in app_env.state.models


def test_delete_needs_the_typed_name_and_lands_in_the_audit_log(open_page: OpenPage,
                                                                app_env: StandinServer) -> None:
    app_env.state.mark_loaded("phi3:mini", "5m")
    at = open_page("pages/models.py")
    at.selectbox(key="models.selected").set_value("phi3:mini").run()
    assert any("loaded right now" in w for w in messages(at, "warning"))
    at.text_input(key="models.delete_confirm").input("phi3").run()
    at.button(key="models.delete").click().run()
    assert "exact name" in messages(at, "error")[0]
    assert app_env.state.requests_to("/api/delete") == [] and "phi3:mini" in app_env.state.models
    at.text_input(key="models.delete_confirm").input("phi3:mini").run()
    at.button(key="models.delete").click().run()
    assert not at.exception
    assert "Deleted phi3:mini" in messages(at, "success")[0]
    assert "phi3:mini" not in app_env.state.models
    assert "phi3:mini" not in list(installed(at)["Name"])
    [entry] = audit_entries()
    assert (entry.action, entry.model, entry.outcome, entry.who) == ("delete", "phi3:mini", "ok", "local")


def test_delete_of_a_model_already_gone_says_so(open_page: OpenPage, app_env: StandinServer) -> None:
    at = open_page("pages/models.py")
    at.selectbox(key="models.selected").set_value("qwen3:0.6b").run()
    del app_env.state.models["qwen3:0.6b"]  # another operator deleted it meanwhile
    at.text_input(key="models.delete_confirm").input("qwen3:0.6b").run()
    at.button(key="models.delete").click().run()
    assert not at.exception
    assert "already deleted" in messages(at, "info")[0]
    assert audit_entries()[0].outcome == "already deleted"


def test_copy_load_and_unload(open_page: OpenPage, app_env: StandinServer) -> None:
    at = open_page("pages/models.py")
    at.selectbox(key="models.selected").set_value("qwen3:0.6b").run()
    at.text_input(key="models.copy_to").input("team/small").run()
    at.button(key="models.copy").click().run()
    assert "team/small:latest" in app_env.state.models
    assert "team/small:latest" in list(installed(at)["Name"])
    at.selectbox(key="models.load_model").set_value("llama3.2:1b").run()
    at.selectbox(key="models.keep_alive").set_value("forever").run()
    at.button(key="models.load").click().run()
    assert app_env.state.is_loaded("llama3.2:1b")
    assert "forever" in texts(at)
    at.button(key="models.unload.llama3.2:1b").click().run()
    assert not app_env.state.is_loaded("llama3.2:1b")
    assert [e.action for e in audit_entries()] == ["unload", "load", "copy"]


def test_details_come_from_show(open_page: OpenPage) -> None:
    at = open_page("pages/models.py")
    at.selectbox(key="models.selected").set_value("llama3.2:1b").run()
    assert "131,072" in [m.value for m in at.metric]
    assert any("You are a helpful assistant." in c.value for c in at.code)


def test_an_operator_sees_the_page_but_cannot_pull_or_delete(open_page: OpenPage, app_env: StandinServer) -> None:
    at = open_page("pages/models.py", session_state={IDENTITY_KEY: Identity(subject="olga", role="operator")})
    assert at.button(key="models.pull").disabled and at.button(key="models.delete").disabled
    assert not at.button(key="models.load").disabled
    assert not at.exception


def test_role_is_checked_server_side_at_click_time(open_page: OpenPage, app_env: StandinServer) -> None:
    for button in ("models.pull", "models.delete"):
        at = open_page("pages/models.py")
        at.text_input(key="models.pull_name").input("qwen2.5:0.5b").run()
        at.selectbox(key="models.selected").set_value("qwen3:0.6b").run()
        at.text_input(key="models.delete_confirm").input("qwen3:0.6b").run()
        at.session_state[IDENTITY_KEY] = Identity(subject="olga", role="operator")  # demoted since the render
        at.button(key=button).click().run()
        assert not at.exception
    # The pull button's callback runs before the rerun, so it reports the refusal itself.
    assert any("needs the admin role" in e for e in messages(at, "error")) or at.button(key="models.delete").disabled
    assert app_env.state.requests_to("/api/pull") == [] and app_env.state.requests_to("/api/delete") == []
    assert audit_entries() == []


def test_audit_page_lists_and_filters(open_page: OpenPage, app_env: StandinServer) -> None:
    at = open_page("pages/models.py")
    at.selectbox(key="models.selected").set_value("qwen3:0.6b").run()
    at.text_input(key="models.delete_confirm").input("qwen3:0.6b").run()
    at.button(key="models.delete").click().run()
    at.selectbox(key="models.load_model").set_value("llama3.2:1b").run()
    at.button(key="models.load").click().run()
    at.switch_page("pages/audit.py").run()
    assert not at.exception
    frame = at.dataframe[0].value
    assert list(frame["Action"]) == ["load", "delete"] and set(frame["Who"]) == {"local"}
    at.selectbox(key="audit.action").set_value("delete").run()
    assert list(at.dataframe[0].value["Model"]) == ["qwen3:0.6b"]


def test_audit_page_is_not_offered_to_an_operator(open_page: OpenPage) -> None:
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        open_page("pages/audit.py", session_state={IDENTITY_KEY: Identity(subject="olga", role="operator")})
    at = open_page("pages/audit.py")
    at.session_state[IDENTITY_KEY] = Identity(subject="olga", role="operator")  # demoted while on the page
    at.run()
    assert not at.exception
    assert not [d for d in at.dataframe if "Outcome" in d.value.columns]


def test_matrix_flags_digest_differences_between_backends(open_page: OpenPage, app_env: StandinServer,
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with StandinServer() as other:
        other.state.models["llama3.2:1b"] = {**other.state.models["llama3.2:1b"], "digest": "f" * 64}
        del other.state.models["phi3:mini"]
        backends = tmp_path / "backends.toml"
        backends.write_text(f'[[backends]]\nname = "gpu"\nurl = "{app_env.url}"\n\n'
                            f'[[backends]]\nname = "cpu"\nurl = "{other.url}"\n')
        monkeypatch.setenv("DASHBOARD_BACKENDS_FILE", str(backends))
        at = open_page("pages/models.py")
        matrix = at.dataframe[-1].value.set_index("Model")
        assert matrix.loc["phi3:mini", "cpu"] == "—"
        assert bool(matrix.loc["llama3.2:1b", "Digests differ"]) and not bool(matrix.loc["qwen3:0.6b",
                                                                                          "Digests differ"])
        assert any("Different digests" in w and "llama3" in w for w in messages(at, "warning"))
