"""Gateway backends over real sockets: a fresh token per request, for the acting person, to that host only."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from services.access.acting import acting_as, bind_actor, current_actor
from services.access.gateway import gateway_auth_headers
from services.access.tokens import AuthConfigError
from services.config import Backend, load_backends, validate_backend_url
from services.connections import connect
from services.errors import AuthError, InvalidInput, TransportError, Unauthorized
from services.ollama.client import OllamaClient
from services.ollama.stream import StreamPump
from tests.standin import StandinServer

GATEWAY_SECRET = "g" * 40
AUDIENCE, ISSUER = "ai-gateway", "ollama-dashboard"


@pytest.fixture
def gateway(standin: StandinServer) -> Backend:
    standin.state.configure(gateway_secret=GATEWAY_SECRET, gateway_audience=AUDIENCE)
    return Backend(name="company", kind="gateway", url=standin.url, gateway_secret=GATEWAY_SECRET,
                   gateway_audience=AUDIENCE, gateway_issuer=ISSUER)


@pytest.fixture
def gateway_client(gateway: Backend) -> Iterator[OllamaClient]:
    client = connect(gateway, connect_timeout_s=2.0, load_timeout_s=30.0, stall_timeout_s=2.0)
    yield client
    client.close()


def token_claims(request: dict[str, Any]) -> dict[str, Any]:
    header = request["headers"].get("authorization", "")
    assert header.startswith("Bearer "), request
    return jwt.decode(header[7:], GATEWAY_SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)


def test_every_gateway_request_carries_a_fresh_short_lived_token(standin: StandinServer,
                                                                 gateway_client: OllamaClient) -> None:
    with acting_as("alice", "operator"):
        names = [m.name for m in gateway_client.tags()]
        gateway_client.tags()
    assert "llama3.2:1b" in names
    requests = standin.state.requests_to("/ai/models")
    assert len(requests) == 2
    first, second = (token_claims(r) for r in requests)
    for claims in (first, second):
        assert claims["sub"] == "alice" and claims["role"] == "operator"
        assert claims["aud"] == AUDIENCE and claims["iss"] == ISSUER
        assert 0 < claims["exp"] - claims["iat"] <= 15 * 60
        assert abs(claims["iat"] - time.time()) < 30
    assert first["jti"] != second["jti"]
    assert requests[0]["headers"]["authorization"] != requests[1]["headers"]["authorization"]


def test_gateway_paths_are_mapped(standin: StandinServer, gateway_client: OllamaClient) -> None:
    with acting_as("bob", "admin"):
        assert gateway_client.version() == "gateway"
        info = gateway_client.show("phi3:mini")
        lines = list(gateway_client.generate("phi3:mini", "hello"))
        chat = list(gateway_client.chat("llama3.2:1b", [{"role": "user", "content": "hi"}]))
    assert info["details"]["family"] == "phi3"
    assert lines[-1]["done"] and chat[-1]["done"]
    paths = [(r["method"], r["path"]) for r in standin.state.requests]
    assert paths == [("GET", "/ai/models"), ("GET", "/ai/models/phi3:mini"), ("POST", "/ai/generate"),
                     ("POST", "/ai/chat")]
    assert all(token_claims(r)["sub"] == "bob" for r in standin.state.requests)
    with acting_as("bob", "admin"), pytest.raises(InvalidInput, match="not available through the gateway"):
        gateway_client.ps()
    assert len(standin.state.requests) == 4


def test_stream_headers_are_computed_when_the_stream_is_created(standin: StandinServer,
                                                                gateway_client: OllamaClient) -> None:
    """The stream is opened on a reader thread (StreamPump) where the acting ContextVar is not set."""
    with acting_as("carol", "operator"):
        stream = gateway_client.chat("llama3.2:1b", [{"role": "user", "content": "hi"}])
    assert current_actor() is None
    pump = StreamPump(stream)
    done = False
    deadline = time.monotonic() + 20
    while not done and time.monotonic() < deadline:
        _, done = pump.drain(0.5)
    assert done
    (request,) = standin.state.requests_to("/ai/chat")
    assert token_claims(request)["sub"] == "carol"


def test_concurrent_people_on_one_shared_client_get_their_own_tokens(standin: StandinServer,
                                                                     gateway_client: OllamaClient) -> None:
    errors: list[BaseException] = []

    def work(subject: str) -> None:
        try:
            with acting_as(subject, "viewer"):
                for _ in range(3):
                    gateway_client.tags()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"person-{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    subjects = [token_claims(r)["sub"] for r in standin.state.requests_to("/ai/models")]
    assert sorted(subjects) == sorted([f"person-{i}" for i in range(4)] * 3)
    # Each thread's requests carry only its own subject: no identity leaks through the shared client.
    assert len({token_claims(r)["jti"] for r in standin.state.requests_to("/ai/models")}) == 12


def test_without_an_acting_person_nothing_is_sent(standin: StandinServer, gateway_client: OllamaClient) -> None:
    with pytest.raises(AuthError, match="Nobody is signed in"):
        gateway_client.tags()
    with pytest.raises(AuthError):
        gateway_client.chat("llama3.2:1b", [{"role": "user", "content": "hi"}])
    assert standin.state.requests == []


def test_the_actor_resolver_names_the_person_when_no_binding_exists(standin: StandinServer,
                                                                    gateway: Backend) -> None:
    client = connect(gateway, connect_timeout_s=2.0, actor=lambda: ("dave", "admin"))
    client.tags()
    with acting_as("erin", "viewer"):  # an explicit binding wins over the resolver
        client.tags()
    client.close()
    assert [token_claims(r)["sub"] for r in standin.state.requests_to("/ai/models")] == ["dave", "erin"]


def test_a_binding_made_by_the_router_lasts_for_the_thread(standin: StandinServer,
                                                           gateway_client: OllamaClient) -> None:
    """The router and every live fragment bind the signed-in person for the rest of their run."""

    def script_run() -> None:
        bind_actor("frank", "operator")
        gateway_client.tags()

    thread = threading.Thread(target=script_run)
    thread.start()
    thread.join(20)
    assert current_actor() is None  # another thread's binding never leaks here
    assert [token_claims(r)["sub"] for r in standin.state.requests_to("/ai/models")] == ["frank"]


def test_the_gateway_refuses_a_token_signed_with_another_secret(standin: StandinServer, gateway: Backend) -> None:
    standin.state.configure(gateway_secret="x" * 40)
    client = connect(gateway, connect_timeout_s=2.0)
    with acting_as("alice", "operator"), pytest.raises(Unauthorized):
        client.tags()
    client.close()


def test_non_gateway_backends_get_no_token(standin: StandinServer, backend: Backend) -> None:
    client = connect(backend, connect_timeout_s=2.0)
    with acting_as("alice", "admin"):
        client.tags()
        list(client.chat("llama3.2:1b", [{"role": "user", "content": "hi"}]))
    client.close()
    assert standin.state.requests
    assert all("authorization" not in r["headers"] for r in standin.state.requests)


def test_cloud_backend_gets_its_api_key_not_a_minted_token(standin: StandinServer) -> None:
    cloud = Backend(name="cloud", kind="ollama-cloud", url=standin.url, api_key="cloud-key")
    client = connect(cloud, connect_timeout_s=2.0)
    with acting_as("alice", "admin"):
        client.tags()
    client.close()
    assert standin.state.requests_to("/api/tags")[0]["headers"]["authorization"] == "Bearer cloud-key"


def test_a_redirect_to_another_host_is_refused_and_not_followed(gateway: Backend) -> None:
    with StandinServer() as gateway_host, StandinServer() as elsewhere:
        gateway_host.state.configure(redirect_to=f"{elsewhere.url}/ai/models")
        moved = Backend(name="company", kind="gateway", url=gateway_host.url, gateway_secret=GATEWAY_SECRET)
        client = connect(moved, connect_timeout_s=2.0, stall_timeout_s=2.0)
        with acting_as("alice", "operator"):
            with pytest.raises(TransportError, match="refused a redirect"):
                client.tags()
            stream = client.chat("llama3.2:1b", [{"role": "user", "content": "hi"}])
        with pytest.raises(TransportError, match="refused a redirect"):
            list(stream)
        client.close()
        assert [r["path"] for r in gateway_host.state.requests] == ["/ai/models", "/ai/chat"]
        assert elsewhere.state.requests == []  # the token never reached the other host


def test_a_short_gateway_secret_is_refused(standin: StandinServer) -> None:
    weak = Backend(name="weak", kind="gateway", url=standin.url, gateway_secret="short")
    client = connect(weak, connect_timeout_s=2.0)
    with acting_as("alice", "operator"), pytest.raises(AuthConfigError, match="at least 32 bytes"):
        client.tags()
    client.close()
    assert standin.state.requests == []


# ---- configuration: where backends (and so tokens) may point -----------------------------------

def test_a_gateway_in_the_backends_file_needs_a_strong_secret(tmp_path: Any) -> None:
    path = tmp_path / "backends.toml"
    path.write_text("[[backends]]\nname='gw'\nkind='gateway'\nurl='https://gw.example'\njwt_secret_env='GW'\n")
    with pytest.raises(InvalidInput, match="at least 32"):
        load_backends({"DASHBOARD_BACKENDS_FILE": str(path), "GW": "short"})
    (gw,) = load_backends({"DASHBOARD_BACKENDS_FILE": str(path), "GW": GATEWAY_SECRET})
    assert gw.kind == "gateway" and gw.gateway_secret == GATEWAY_SECRET
    path.write_text("[[backends]]\nname='gw'\nkind='gateway'\nurl='https://gw.example'\n")
    with pytest.raises(InvalidInput, match="jwt_secret_env"):
        load_backends({"DASHBOARD_BACKENDS_FILE": str(path)})


URL_CASES: list[tuple[str, bool, str | None]] = [
    ("https://gw.example:8443/", False, None),
    ("http://127.0.0.1:11434", False, None),
    ("http://10.0.0.5:11434", False, None),
    ("file:///etc/passwd", False, "http or https"),
    ("gopher://gw.example", False, "http or https"),
    ("http://user:pw@gw.example", False, "credentials"),
    ("http://token@gw.example", False, "credentials"),
    ("http://169.254.169.254/latest/meta-data", False, "link-local or metadata"),
    ("http://169.254.169.254/latest/meta-data", True, "cloud metadata"),
    ("http://metadata.google.internal/computeMetadata/v1", False, "metadata"),
    ("http://metadata.google.internal./computeMetadata/v1", False, "metadata"),
    ("http://[fd00:ec2::254]/latest", True, "cloud metadata"),
    ("http://100.100.100.200/latest", False, "cloud metadata"),
    ("http://2852039166/", False, "link-local"),
    ("http://0xa9fea9fe/", False, "link-local"),
    ("http://0251.0376.0251.0376/", False, "link-local"),
    ("http://[::ffff:169.254.169.254]/", False, "link-local"),
    ("http://[fe80::1]:11434", False, "link-local"),
    ("http://[fe80::1]:11434", True, None),
    ("http://169.254.10.20:11434", True, None),
    ("http://0.0.0.0:11434", True, "unspecified"),
    ("http://224.0.0.1", False, "multicast"),
    ("http://gw.example:99999", False, "not a valid URL"),
    ("http://", False, "no host"),
]


@pytest.mark.parametrize(("url", "allow", "refusal"), URL_CASES)
def test_backend_url_validation(url: str, allow: bool, refusal: str | None) -> None:
    if refusal is None:
        assert validate_backend_url(url, allow_link_local=allow) == url.rstrip("/")
    else:
        with pytest.raises(InvalidInput, match=refusal):
            validate_backend_url(url, allow_link_local=allow)


def test_allow_link_local_is_an_explicit_flag_in_the_backends_file(tmp_path: Any) -> None:
    path = tmp_path / "backends.toml"
    path.write_text("[[backends]]\nname='box'\nurl='http://169.254.10.20:11434'\n")
    with pytest.raises(InvalidInput, match="link-local"):
        load_backends({"DASHBOARD_BACKENDS_FILE": str(path)})
    path.write_text("[[backends]]\nname='box'\nurl='http://169.254.10.20:11434'\nallow_link_local = 'yes'\n")
    with pytest.raises(InvalidInput, match="link-local"):
        load_backends({"DASHBOARD_BACKENDS_FILE": str(path)})
    path.write_text("[[backends]]\nname='box'\nurl='http://169.254.10.20:11434'\nallow_link_local = true\n")
    assert load_backends({"DASHBOARD_BACKENDS_FILE": str(path)})[0].url == "http://169.254.10.20:11434"


def test_a_process_wide_worker_can_act_under_a_named_service_subject(standin: StandinServer,
                                                                     gateway: Backend) -> None:
    """The prober acts for nobody: it gets its own subject, never a person's left in a ContextVar."""
    client = OllamaClient(gateway, connect_timeout_s=2.0,
                          auth_headers=gateway_auth_headers(gateway, service="dashboard-prober"))
    with acting_as("alice", "admin"):
        client.tags()
    client.close()
    claims = token_claims(standin.state.requests_to("/ai/models")[0])
    assert (claims["sub"], claims["role"]) == ("dashboard-prober", "viewer")
