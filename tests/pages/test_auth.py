"""The sign-in gate in the real app script: pages per role, refusals as pages, sessions kept apart."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from streamlit.testing.v1 import AppTest

from components.auth import FORM_TOKEN_KEY, REFUSAL_KEY, TOKEN_PARAM
from components.session import IDENTITY_KEY, Identity
from services.access.pages import PAGES
from services.access.roles import ROLES, allows
from tests.standin import StandinServer

ROOT = Path(__file__).resolve().parents[2]
SECRET = "p" * 48


def declared_pages() -> list[tuple[str, str]]:
    """(path, least role) of every page in the registry the router builds its navigation from."""
    return [(spec.script, spec.least_role) for spec in PAGES]


def token(role: Any = "viewer", sub: str = "vera", **overrides: Any) -> str:
    key = overrides.pop("key", SECRET)
    now = int(time.time())
    claims = {"iss": "ollama-dashboard", "aud": "ollama-dashboard", "sub": sub, "role": role, "iat": now - 5,
              "exp": now + 600, **overrides}
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key)


@pytest.fixture
def keyed(app_env: StandinServer, monkeypatch: pytest.MonkeyPatch) -> StandinServer:
    monkeypatch.setenv("DASHBOARD_JWT_SECRET", SECRET)
    for name in ("DASHBOARD_JWT_PUBLIC_KEY", "DASHBOARD_JWT_ISSUER", "DASHBOARD_JWT_AUDIENCE"):
        monkeypatch.delenv(name, raising=False)
    return app_env


def new_app() -> AppTest:
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)


def registered_pages(at: AppTest) -> set[str]:
    """Script paths of the pages the navigation registered for this session (the hidden Home excluded).

    Without a ``st.navigation`` call (the sign-in page stops first) AppTest lists app.py itself plus the
    pages/ directory, which the real server ignores (serve.py turns that mode off): nothing is registered.
    """
    paths = {str(info.get("script_path") or "") for info in at._registered_pages.values()}
    if str(ROOT / "app.py") in paths:
        return set()
    return {str(Path(p).relative_to(ROOT)) for p in paths if p.startswith(str(ROOT))}


def signed_in_via_link(raw: str) -> AppTest:
    at = new_app()
    at.query_params[TOKEN_PARAM] = raw
    return at.run()


def texts(at: AppTest) -> str:
    parts = [e.value for e in (*at.info, *at.error, *at.markdown, *at.caption, *at.title)]
    return "\n".join(str(p) for p in parts).replace("\\", "")  # labels escape Markdown


@pytest.mark.parametrize("role", ROLES)
def test_each_role_sees_exactly_its_pages(keyed: StandinServer, role: str) -> None:
    at = signed_in_via_link(token(role, sub=f"{role}-1"))
    assert not at.exception
    expected = {path for path, needed in declared_pages() if allows(role, needed)}
    assert registered_pages(at) == expected
    identity = at.session_state[IDENTITY_KEY]
    assert (identity.subject, identity.role, identity.source) == (f"{role}-1", role, "link")
    assert TOKEN_PARAM not in at.query_params  # removed from the address bar at once
    assert f"{role}-1" in texts(at)
    # Fixed policy, whatever pages others add: a viewer never reaches chat, models or the audit log.
    if role == "viewer":
        assert not {"pages/chat.py", "pages/models.py", "pages/audit.py"} & registered_pages(at)
    if role == "admin":
        assert registered_pages(at) == {path for path, _ in declared_pages()}


def test_a_forbidden_page_cannot_be_opened_by_address(keyed: StandinServer) -> None:
    at = signed_in_via_link(token("viewer"))
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("pages/chat.py")


def test_without_a_token_only_the_sign_in_page_renders(keyed: StandinServer) -> None:
    at = new_app().run()
    assert not at.exception
    assert "Not signed in" in texts(at)
    assert registered_pages(at) == set()
    assert not at.selectbox  # not even the backend names
    assert IDENTITY_KEY not in at.session_state


def gated() -> None:
    """The gate alone, as app.py calls it first on every run; AppTest reruns this script every time
    (after a page switch it would re-run only the page file, which the real server never does)."""
    import streamlit as st

    from components.auth import gate

    identity = gate()
    st.write(f"content for {identity.subject} ({identity.role})")


def test_sign_in_with_the_form_then_sign_out(keyed: StandinServer) -> None:
    at = AppTest.from_function(gated).run()
    assert "Not signed in" in texts(at) and "content for" not in texts(at)
    at.text_input(key=FORM_TOKEN_KEY).input(token("admin", sub="ada"))
    at.button[0].click()
    at.run()
    assert not at.exception
    assert "content for ada (admin)" in texts(at)
    assert at.session_state[IDENTITY_KEY].source == "form"
    assert at.session_state[FORM_TOKEN_KEY] == ""  # the pasted token is not kept in a widget
    at.button(key="auth.sign_out").click()
    at.run()
    assert IDENTITY_KEY not in at.session_state
    assert "You signed out" in texts(at) and "content for" not in texts(at)
    at.run()
    assert "content for" not in texts(at)  # signing out sticks across reruns


def test_the_sign_in_form_through_the_router(keyed: StandinServer) -> None:
    at = new_app().run()
    at.text_input(key=FORM_TOKEN_KEY).input(token("admin", sub="ada"))
    at.button[0].click()
    at.run()
    assert not at.exception
    assert registered_pages(at) == {path for path, _ in declared_pages()}


BAD = [
    ("alg none", lambda: jwt.encode({"sub": "x"}, None, algorithm="none"), "Invalid token"),
    ("another key", lambda: token("admin", key="z" * 48), "Invalid token"),
    ("expired", lambda: token("admin", exp=int(time.time()) - 300, iat=int(time.time()) - 900), "Session expired"),
    ("unknown role", lambda: token("superuser"), "Not allowed"),
    ("wrong audience", lambda: token("admin", aud="billing"), "Invalid token"),
    ("garbage", lambda: "not-a-token", "Invalid token"),
    ("100 KB", lambda: token("admin", pad="x" * 100_000), "too large"),
]


@pytest.mark.parametrize(("case", "make", "shown"), BAD, ids=[b[0] for b in BAD])
def test_bad_tokens_show_a_refusal_page_not_a_traceback(keyed: StandinServer, case: str, make: Any,
                                                        shown: str) -> None:
    raw = make()
    for via in ("link", "form"):
        at = new_app()
        if via == "link":
            at.query_params[TOKEN_PARAM] = raw
            at.run()
        else:
            at.run()
            at.text_input(key=FORM_TOKEN_KEY).input(raw)
            at.button[0].click()
            at.run()
        assert not at.exception, (case, via)
        assert shown in texts(at), (case, via, texts(at))
        assert raw[:40] not in texts(at)
        assert IDENTITY_KEY not in at.session_state and registered_pages(at) == set()


def test_expiry_is_rechecked_on_every_rerun(keyed: StandinServer) -> None:
    at = AppTest.from_function(gated)
    at.query_params[TOKEN_PARAM] = token("operator", sub="otto")
    at.run()
    assert "content for otto (operator)" in texts(at)
    at.run()
    assert "content for otto (operator)" in texts(at)  # the stored identity holds without the token
    # Time passes: the stored expiry is now behind us (a token is never re-read from the address).
    at.session_state[IDENTITY_KEY] = dataclasses.replace(at.session_state[IDENTITY_KEY], expires_at=time.time() - 60)
    at.run()
    assert not at.exception
    assert "Session expired" in texts(at) and "content for" not in texts(at)
    assert IDENTITY_KEY not in at.session_state


def test_an_auto_refreshing_fragment_ends_an_expired_session(keyed: StandinServer) -> None:
    def script() -> None:
        import streamlit as st

        from components.auth import enter_fragment

        st.session_state.setdefault("runs", 0)
        st.session_state["runs"] += 1

        @st.fragment
        def tile() -> None:
            enter_fragment()
            st.write("fleet status")

        tile()

    at = AppTest.from_function(script)
    at.session_state[IDENTITY_KEY] = Identity("wall-1", "viewer", expires_at=time.time() + 600, source="link")
    at.run()
    assert at.session_state["runs"] == 1 and at.session_state[IDENTITY_KEY].subject == "wall-1"
    at.session_state[IDENTITY_KEY] = Identity("wall-1", "viewer", expires_at=time.time() - 60, source="link")
    at.run()
    assert at.session_state["runs"] == 3  # the fragment asked for a whole-app rerun, where the gate takes over
    assert IDENTITY_KEY not in at.session_state
    assert at.session_state[REFUSAL_KEY][0] == "expired"


def test_viewer_calling_an_admin_action_directly_is_refused_server_side(keyed: StandinServer) -> None:
    def script() -> None:
        import streamlit as st

        from components.session import IDENTITY_KEY, Identity, require_role
        from services.errors import Forbidden

        st.session_state[IDENTITY_KEY] = Identity(subject="wall-1", role="viewer")
        for needed, action in (("admin", "delete a model"), ("operator", "unload a model"), ("viewer", "look")):
            try:
                require_role(needed, action)
                st.write(f"allowed: {action}")
            except Forbidden as exc:
                st.write(f"refused: {exc}")

    at = AppTest.from_function(script).run()
    lines = [m.value for m in at.markdown]
    assert lines[0].startswith("refused: Not allowed: delete a model needs the admin role (you are viewer)")
    assert lines[1].startswith("refused: Not allowed: unload a model needs the operator role")
    assert lines[2] == "allowed: look"


def test_no_default_admin_when_a_key_is_configured(keyed: StandinServer) -> None:
    def script() -> None:
        import streamlit as st

        from components.session import require_role
        from services.errors import Forbidden

        try:
            require_role("viewer", "look")
            st.write("allowed")
        except Forbidden as exc:
            st.write(f"refused: {exc}")

    at = AppTest.from_function(script).run()
    assert at.markdown[0].value.startswith("refused: Not signed in")


def test_two_sessions_do_not_leak_identities(keyed: StandinServer) -> None:
    sessions = {}
    for name, raw in (("wall", token("viewer", sub="wall-screen")), ("ada", token("admin", sub="ada")), ("none", None)):
        at = AppTest.from_function(gated)
        if raw:
            at.query_params[TOKEN_PARAM] = raw
        sessions[name] = at
    for _ in range(3):  # interleaved reruns in one process, sharing every cache
        for at in sessions.values():
            at.run()
            assert not at.exception
        assert "content for wall-screen (viewer)" in texts(sessions["wall"])
        assert "content for ada (admin)" in texts(sessions["ada"])
        assert "Not signed in" in texts(sessions["none"]) and "content for" not in texts(sessions["none"])
        assert "ada" not in texts(sessions["wall"]) and "wall-screen" not in texts(sessions["ada"])
    routed = {role: signed_in_via_link(token(role, sub=f"{role}-x")) for role in ("viewer", "admin")}
    assert "pages/audit.py" in registered_pages(routed["admin"])
    assert "pages/audit.py" not in registered_pages(routed["viewer"])


def test_open_local_mode_is_announced_and_is_a_local_admin(app_env: StandinServer,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DASHBOARD_JWT_SECRET", raising=False)
    monkeypatch.delenv("DASHBOARD_JWT_PUBLIC_KEY", raising=False)
    at = new_app().run()
    assert not at.exception
    assert "Open local mode" in "\n".join(m.value for m in at.sidebar.markdown)
    assert registered_pages(at) == {path for path, _ in declared_pages()}
    # A ?token= in open mode is not an identity: there is no key to check it against.
    at2 = new_app()
    at2.query_params[TOKEN_PARAM] = token("viewer")
    at2.run()
    assert registered_pages(at2) == {path for path, _ in declared_pages()}
    assert TOKEN_PARAM not in at2.query_params


def test_an_identity_set_by_server_code_is_used_in_open_mode(app_env: StandinServer,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """How other page tests act as a role: the gate keeps a server-side Identity it finds."""
    monkeypatch.delenv("DASHBOARD_JWT_SECRET", raising=False)
    at = new_app()
    at.session_state[IDENTITY_KEY] = Identity(subject="tester", role="viewer")
    at.run()
    assert registered_pages(at) == {path for path, needed in declared_pages() if allows("viewer", needed)}
