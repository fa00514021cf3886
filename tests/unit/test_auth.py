"""The pyjwt matrix: every bad token is refused with its own reason, never a crash; the valid ones pass."""

from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from services.access import startup, tokens
from services.access.tokens import AuthConfig, AuthConfigError, load_auth_config, mint_token, verify_token
from services.errors import AuthError, ConfigError, DashboardError

ROOT = Path(__file__).resolve().parents[2]
SECRET = "k" * 41 + "-test-secret-0123456789"  # 64 bytes: enough for HS512 too, so that case is about alg
OTHER_SECRET = "o" * 48
ISS, AUD = "ollama-dashboard", "ollama-dashboard"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _pem(public_key: Any) -> str:
    return public_key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@dataclass(frozen=True)
class Keys:
    rsa_private: rsa.RSAPrivateKey
    rsa_other: rsa.RSAPrivateKey
    ec_private: ec.EllipticCurvePrivateKey

    @property
    def rsa_public_pem(self) -> str:
        return _pem(self.rsa_private.public_key())

    @property
    def ec_public_pem(self) -> str:
        return _pem(self.ec_private.public_key())


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(rsa.generate_private_key(65537, 2048), rsa.generate_private_key(65537, 2048),
                ec.generate_private_key(ec.SECP256R1()))


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": ISS, "aud": AUD, "sub": "alice", "role": "operator", "iat": now - 5, "exp": now + 600}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs(payload: dict[str, Any], key: str = SECRET, alg: str = "HS256", headers: dict | None = None) -> str:
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def handmade(header: dict[str, Any], payload: dict[str, Any], key: bytes | None) -> str:
    """A token built by hand: what an attacker sends (pyjwt would refuse to sign some of these)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


HS_CONFIG = AuthConfig("HS256", SECRET, ISS, AUD, secret=SECRET)

# (case, token factory, expected reason, words the message must contain)
HS_CASES: list[tuple[str, Callable[[Keys], str], str, str]] = [
    ("alg none", lambda k: handmade({"alg": "none", "typ": "JWT"}, claims(), None), "invalid", "only accepts HS256"),
    ("alg None spelled", lambda k: handmade({"alg": "None"}, claims(), None), "invalid", "only accepts HS256"),
    ("signed with another secret", lambda k: hs(claims(), OTHER_SECRET), "invalid", "another key"),
    ("HS512 with the right secret", lambda k: hs(claims(), SECRET, "HS512"), "invalid", "only accepts HS256"),
    ("RS256 token to an HS256 dashboard",
     lambda k: jwt.encode(claims(), k.rsa_private, algorithm="RS256"), "invalid", "only accepts HS256"),
    ("expired", lambda k: hs(claims(exp=int(time.time()) - 120, iat=int(time.time()) - 900)), "expired", "expired"),
    ("not yet valid (nbf)", lambda k: hs(claims(nbf=int(time.time()) + 600)), "invalid", "not valid yet"),
    ("issued in the future (iat)", lambda k: hs(claims(iat=int(time.time()) + 600)), "invalid", "not valid yet"),
    ("wrong audience", lambda k: hs(claims(aud="billing")), "invalid", "another application"),
    ("wrong issuer", lambda k: hs(claims(iss="someone-else")), "invalid", "someone else"),
    ("issuer prefix only", lambda k: hs(claims(iss="ollama-dash")), "invalid", "someone else"),
    ("missing exp", lambda k: hs(claims(exp=None)), "invalid", "'exp'"),
    ("missing iat", lambda k: hs(claims(iat=None)), "invalid", "'iat'"),
    ("missing sub", lambda k: hs(claims(sub=None)), "invalid", "'sub'"),
    ("missing aud", lambda k: hs(claims(aud=None)), "invalid", "'aud'"),
    ("missing iss", lambda k: hs(claims(iss=None)), "invalid", "'iss'"),
    ("empty sub", lambda k: hs(claims(sub="  ")), "invalid", "who it belongs to"),
    ("exp is not a number", lambda k: hs(claims(exp="soon")), "invalid", "could not be decoded"),
    ("malformed base64", lambda k: "eyJ!!!.@@@.###", "invalid", "could not be decoded"),
    ("not a jwt", lambda k: "not.a.jwt", "invalid", "could not be decoded"),
    ("two segments", lambda k: "eyJhbGciOiJIUzI1NiJ9.e30", "invalid", "could not be decoded"),
    ("payload is a list", lambda k: handmade({"alg": "HS256"}, [1, 2], SECRET.encode()),  # type: ignore[arg-type]
     "invalid", "could not be decoded"),
    ("non-ASCII", lambda k: "eyJé.abc.def", "invalid", "characters"),
    ("100 KB token", lambda k: hs(claims(pad="x" * 100_000)), "invalid", "too large"),
    ("unknown crit header", lambda k: hs(claims(), headers={"crit": ["exp-v2"], "exp-v2": 1}), "invalid", "refused"),
    ("no role", lambda k: hs(claims(role=None)), "forbidden", "role"),
    ("unknown role", lambda k: hs(claims(role="root")), "forbidden", "'root'"),
    ("role with the wrong case", lambda k: hs(claims(role="Admin")), "forbidden", "'Admin'"),
    ("nothing", lambda k: "", "not_signed_in", "Sign in"),
    ("only spaces", lambda k: "   ", "not_signed_in", "Sign in"),
]


@pytest.mark.parametrize(("case", "make", "reason", "words"), HS_CASES, ids=[c[0] for c in HS_CASES])
def test_bad_tokens_are_refused_with_a_precise_reason(
    keys: Keys, caplog: pytest.LogCaptureFixture, case: str, make: Callable[[Keys], str], reason: str, words: str
) -> None:
    token = make(keys)
    caplog.set_level(logging.INFO, logger="services.access.tokens")
    with pytest.raises(AuthError) as refused:
        verify_token(token, HS_CONFIG, source="form")
    assert refused.value.reason == reason, refused.value.message
    assert words in refused.value.message
    assert isinstance(refused.value, DashboardError)
    if token.strip():
        line = caplog.text
        assert "sign-in refused" in line and "via form" in line and "token sha256:" in line
        # The token (or any long piece of it) never reaches the log.
        for piece in (token, *token.split(".")):
            if len(piece) >= 8:
                assert piece not in line


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
def test_valid_tokens_give_subject_role_and_expiry(role: str) -> None:
    now = int(time.time())
    verified = verify_token(hs(claims(role=role, sub=f"{role}-person", exp=now + 60)), HS_CONFIG)
    assert (verified.subject, verified.role, verified.expires_at) == (f"{role}-person", role, now + 60)


def test_small_clock_skew_is_tolerated_but_no_more() -> None:
    now = int(time.time())
    assert verify_token(hs(claims(exp=now - 10)), HS_CONFIG).subject == "alice"
    assert verify_token(hs(claims(iat=now + 10)), HS_CONFIG).subject == "alice"
    with pytest.raises(AuthError, match="expired"):
        verify_token(hs(claims(exp=now - tokens.LEEWAY_S - 5)), HS_CONFIG)


def test_bearer_prefix_and_whitespace_are_accepted() -> None:
    assert verify_token(f"  Bearer {hs(claims())}\n", HS_CONFIG).role == "operator"


def test_a_huge_token_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_decode(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("decoded a 100 KB token")

    monkeypatch.setattr(jwt.PyJWT, "decode", must_not_decode)
    monkeypatch.setattr(jwt, "get_unverified_header", must_not_decode)
    with pytest.raises(AuthError, match="too large"):
        verify_token("a" * 100_000, HS_CONFIG)


PYJWT_ERRORS = sorted(
    (cls for _, cls in inspect.getmembers(jwt.exceptions, inspect.isclass) if issubclass(cls, jwt.PyJWTError)),
    key=lambda cls: cls.__name__,
)


@pytest.mark.parametrize("error", PYJWT_ERRORS, ids=[cls.__name__ for cls in PYJWT_ERRORS])
def test_every_pyjwt_failure_class_becomes_an_auth_error(monkeypatch: pytest.MonkeyPatch,
                                                         error: type[Exception]) -> None:
    """Including InvalidKeyError and PyJWK*, which are not InvalidTokenError subclasses."""

    def fail(*args: Any, **kwargs: Any) -> None:
        raise error("claim") if error is jwt.MissingRequiredClaimError else error("boom")

    monkeypatch.setattr(jwt.PyJWT, "decode", fail)
    with pytest.raises(AuthError) as refused:
        verify_token(hs(claims()), HS_CONFIG)
    assert refused.value.reason in ("invalid", "expired")


def test_not_every_pyjwt_error_is_an_invalid_token_error() -> None:
    """The pitfall the mapping guards against; if pyjwt changes its tree, revisit verify_token."""
    assert not issubclass(jwt.InvalidKeyError, jwt.InvalidTokenError)
    assert not issubclass(jwt.PyJWKClientConnectionError, jwt.InvalidTokenError)


def test_a_pem_used_as_hmac_secret_is_an_auth_error_not_a_crash(keys: Keys, caplog: pytest.LogCaptureFixture) -> None:
    """pyjwt raises InvalidKeyError here; it must be refused cleanly and flagged as a key problem."""
    config = AuthConfig("HS256", keys.rsa_public_pem, ISS, AUD, secret=keys.rsa_public_pem)
    with pytest.raises(AuthError, match="could not be checked"):
        verify_token(handmade({"alg": "HS256"}, claims(), keys.rsa_public_pem.encode()), config)
    assert "JWT key problem" in caplog.text


# ---- asymmetric keys: the algorithm is pinned from the key type --------------------------------

def test_rs256_dashboard(keys: Keys) -> None:
    config = load_auth_config({"DASHBOARD_JWT_PUBLIC_KEY": keys.rsa_public_pem})
    assert config is not None and config.algorithm == "RS256" and not config.can_mint
    assert verify_token(jwt.encode(claims(role="admin"), keys.rsa_private, algorithm="RS256"), config).role == "admin"
    cases = {
        "signed with another RSA key": (jwt.encode(claims(), keys.rsa_other, algorithm="RS256"), "another key"),
        "HS256 forged with the RSA public key": (
            handmade({"alg": "HS256", "typ": "JWT"}, claims(role="admin"), keys.rsa_public_pem.encode()),
            "only accepts RS256"),
        "RS512 with the right key": (jwt.encode(claims(), keys.rsa_private, algorithm="RS512"), "only accepts RS256"),
        "alg none": (handmade({"alg": "none"}, claims(), None), "only accepts RS256"),
        "HS256 with the dashboard's secret": (hs(claims()), "only accepts RS256"),
    }
    for case, (token, words) in cases.items():
        with pytest.raises(AuthError) as refused:
            verify_token(token, config)
        assert refused.value.reason == "invalid" and words in refused.value.message, case


def test_es256_dashboard_from_a_pem_file(keys: Keys, tmp_path: Path) -> None:
    path = tmp_path / "dashboard.pub.pem"
    path.write_text(keys.ec_public_pem)
    config = load_auth_config({"DASHBOARD_JWT_PUBLIC_KEY": str(path), "DASHBOARD_JWT_AUDIENCE": "dash"})
    assert config is not None and config.algorithm == "ES256"
    token = jwt.encode(claims(aud="dash", role="viewer"), keys.ec_private, algorithm="ES256")
    assert verify_token(token, config).role == "viewer"
    with pytest.raises(AuthError, match="only accepts ES256"):
        verify_token(jwt.encode(claims(aud="dash"), keys.rsa_private, algorithm="RS256"), config)


def test_public_key_with_escaped_newlines(keys: Keys) -> None:
    one_line = keys.rsa_public_pem.replace("\n", "\\n")
    config = load_auth_config({"DASHBOARD_JWT_PUBLIC_KEY": one_line})
    assert config is not None and config.algorithm == "RS256"


# ---- configuration refusals -------------------------------------------------------------------

def _pem_of(private: Any) -> str:
    return _pem(private.public_key())


CONFIG_CASES: list[tuple[str, Callable[[Keys], dict[str, str]], str]] = [
    ("31-byte secret", lambda k: {"DASHBOARD_JWT_SECRET": "s" * 31}, "31 bytes"),
    ("both keys", lambda k: {"DASHBOARD_JWT_SECRET": SECRET, "DASHBOARD_JWT_PUBLIC_KEY": k.rsa_public_pem},
     "exactly one"),
    ("PEM as a secret", lambda k: {"DASHBOARD_JWT_SECRET": k.rsa_public_pem}, "DASHBOARD_JWT_PUBLIC_KEY"),
    ("private key", lambda k: {"DASHBOARD_JWT_PUBLIC_KEY": k.rsa_private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()},
     "private key"),
    ("1024-bit RSA", lambda k: {"DASHBOARD_JWT_PUBLIC_KEY": _pem_of(rsa.generate_private_key(65537, 1024))},
     "1024 bits"),
    ("Ed25519", lambda k: {"DASHBOARD_JWT_PUBLIC_KEY": _pem_of(ed25519.Ed25519PrivateKey.generate())},
     "only RSA"),
    ("garbage PEM", lambda k: {"DASHBOARD_JWT_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"
                                                           }, "not a PEM public key"),
    ("missing file", lambda k: {"DASHBOARD_JWT_PUBLIC_KEY": "/nonexistent/key.pem"}, "readable file"),
]


@pytest.mark.parametrize(("case", "env", "words"), CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_unusable_configuration_refuses_to_start(keys: Keys, case: str, env: Callable[[Keys], dict[str, str]],
                                                 words: str) -> None:
    with pytest.raises(AuthConfigError, match=words):
        load_auth_config(env(keys))


def test_mint_round_trip_and_public_key_cannot_mint(keys: Keys) -> None:
    token = mint_token(HS_CONFIG, "wall-screen-3", "viewer", 30 * 86400)
    verified = verify_token(token, HS_CONFIG)
    assert (verified.subject, verified.role) == ("wall-screen-3", "viewer")
    assert 30 * 86400 - 5 <= verified.expires_at - time.time() <= 30 * 86400
    assert jwt.decode(token, options={"verify_signature": False})["jti"]
    public_only = load_auth_config({"DASHBOARD_JWT_PUBLIC_KEY": keys.rsa_public_pem})
    assert public_only is not None
    with pytest.raises(AuthConfigError, match="private key"):
        mint_token(public_only, "x", "viewer", 60)


@pytest.mark.parametrize("text", ["", "-5m", "30y", "1.5h", "999d", "0"])
def test_bad_ttls(text: str) -> None:
    with pytest.raises(ValueError):
        tokens.parse_ttl(text)


def _cli(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DASHBOARD_JWT")}
    return subprocess.run([sys.executable, "-m", "services.access", *args], cwd=ROOT, env={**clean, **env},
                          input=stdin, capture_output=True, text=True, timeout=60)


def test_cli_mints_a_token_the_dashboard_accepts() -> None:
    env = {"DASHBOARD_JWT_SECRET": SECRET}
    minted = _cli(["mint", "--sub", "wall-1", "--role", "viewer", "--ttl", "30d"], env)
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    assert verify_token(token, HS_CONFIG).subject == "wall-1"
    assert "valid until" in minted.stderr and token not in minted.stderr
    checked = _cli(["verify"], env, stdin=token)
    assert checked.returncode == 0 and "sub=wall-1 role=viewer" in checked.stdout
    refused = _cli(["verify"], {"DASHBOARD_JWT_SECRET": OTHER_SECRET}, stdin=token)
    assert refused.returncode == 1 and "another key" in refused.stderr


def test_cli_explains_when_it_cannot_mint(keys: Keys) -> None:
    public = _cli(["mint", "--sub", "a", "--role", "admin"], {"DASHBOARD_JWT_PUBLIC_KEY": keys.rsa_public_pem})
    assert public.returncode == 2 and "private key" in public.stderr and not public.stdout
    none = _cli(["mint", "--sub", "a", "--role", "admin"], {})
    assert none.returncode == 2 and "open local mode" in none.stderr
    short = _cli(["mint", "--sub", "a", "--role", "admin"], {"DASHBOARD_JWT_SECRET": "short"})
    assert short.returncode == 2 and "at least 32" in short.stderr
    bad_role = _cli(["mint", "--sub", "a", "--role", "root"], {"DASHBOARD_JWT_SECRET": SECRET})
    assert bad_role.returncode == 2 and "invalid choice" in bad_role.stderr


# ---- startup: open local mode only on loopback ------------------------------------------------

STARTUP_CASES: list[tuple[list[str], dict[str, str], str | None]] = [
    ([], {}, "127.0.0.1"),
    (["--server.address", "127.0.0.1"], {}, "127.0.0.1"),
    (["--server.address=::1"], {}, "::1"),
    (["--server.address", "0.0.0.0"], {}, None),
    (["--server.address", "10.0.0.7"], {}, None),
    ([], {"STREAMLIT_SERVER_ADDRESS": "0.0.0.0"}, None),
    ([], {"DASHBOARD_REQUIRE_AUTH": "1"}, None),
    (["--server.address", "0.0.0.0"], {"DASHBOARD_JWT_SECRET": SECRET, "DASHBOARD_REQUIRE_AUTH": "1"}, "0.0.0.0"),
    ([], {"DASHBOARD_JWT_SECRET": "too-short"}, None),
]


@pytest.mark.parametrize(("argv", "env", "address"), STARTUP_CASES)
def test_startup_refuses_open_mode_off_loopback(argv: list[str], env: dict[str, str], address: str | None) -> None:
    if address is None:
        with pytest.raises(ConfigError):
            startup.startup_args(argv, env)
        return
    args, check = startup.startup_args(argv, env)
    found = startup.server_address(args, env)
    assert found == address or (found is None and address == "0.0.0.0")
    assert ("OPEN LOCAL MODE" in check.line) == ("DASHBOARD_JWT_SECRET" not in env)


@pytest.mark.parametrize("address", [None, "", "0.0.0.0", "10.0.0.7", "::"])
def test_every_start_refuses_open_mode_off_loopback(address: str | None) -> None:
    """The server's lifespan runs the same check with the address it listens on (`streamlit run app.py`)."""
    with pytest.raises(ConfigError, match="only serves on loopback"):
        startup.check_start({}, address=address)


def test_every_start_refuses_a_short_secret_and_two_keys() -> None:
    with pytest.raises(AuthConfigError, match="at least 32"):
        startup.check_start({"DASHBOARD_JWT_SECRET": "x" * 31}, address="0.0.0.0")
    with pytest.raises(AuthConfigError, match="exactly one"):
        startup.check_start({"DASHBOARD_JWT_SECRET": SECRET, "DASHBOARD_JWT_PUBLIC_KEY": "pem"}, address="0.0.0.0")


def test_every_start_refuses_a_refused_ollama_host() -> None:
    with pytest.raises(ConfigError, match="OLLAMA_HOST is refused"):
        startup.check_start({"OLLAMA_HOST": "169.254.169.254", "DASHBOARD_JWT_SECRET": SECRET}, address="0.0.0.0")


def test_serve_py_refuses_to_start_open_on_all_interfaces() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DASHBOARD_JWT")}
    result = subprocess.run([sys.executable, "serve.py", "--server.address", "0.0.0.0", "--server.port", "8901"],
                            cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "refusing to start" in result.stderr and "loopback" in result.stderr
