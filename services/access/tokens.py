"""People's sign-in tokens: how they are verified, and minted where the dashboard holds the secret.

Verification is configured once per process from the environment:

- ``DASHBOARD_JWT_SECRET``: HS256 with a shared secret of at least 32 bytes (shorter refuses to start);
  the only mode that can also mint tokens (``python -m services.access mint``).
- ``DASHBOARD_JWT_PUBLIC_KEY``: a PEM public key (the PEM text or a path to it). The algorithm is
  pinned from the key type (RSA -> RS256, P-256 -> ES256), never taken from a token's header.
- ``DASHBOARD_JWT_ISSUER`` / ``DASHBOARD_JWT_AUDIENCE``: the exact ``iss`` and ``aud`` every token must carry.

Neither key set means open local mode (``load_auth_config`` returns None): the caller decides what that
allows. Every pyjwt failure, including the classes outside ``InvalidTokenError`` (``InvalidKeyError``,
``PyJWK*``), becomes an ``AuthError`` with one of four reasons and a log line that never holds the token.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from services.access.roles import ROLES, Role
from services.errors import REASON_TITLES, AuthError, ConfigError, Reason

log = logging.getLogger(__name__)

MIN_SECRET_BYTES = 32
MIN_RSA_BITS = 2048
LEEWAY_S = 30
MAX_TOKEN_BYTES = 8192
MAX_MINT_TTL_S = 366 * 24 * 3600
GATEWAY_TTL_S = 300
DEFAULT_ISSUER = "ollama-dashboard"
DEFAULT_AUDIENCE = "ollama-dashboard"
REQUIRED_CLAIMS = ("exp", "iat", "sub", "iss", "aud")
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}



class AuthConfigError(ConfigError):
    """The JWT configuration is unusable; the dashboard must not start with it."""


@dataclass(frozen=True)
class AuthConfig:
    """How tokens are verified. One algorithm family, fixed here and never read from a token."""

    algorithm: str
    verify_key: Any = field(repr=False)
    issuer: str = DEFAULT_ISSUER
    audience: str = DEFAULT_AUDIENCE
    secret: str = field(default="", repr=False)

    @property
    def can_mint(self) -> bool:
        return bool(self.secret)

    @property
    def description(self) -> str:
        source = "DASHBOARD_JWT_SECRET" if self.secret else "DASHBOARD_JWT_PUBLIC_KEY"
        return f"{self.algorithm} via {source}, issuer {self.issuer!r}, audience {self.audience!r}"


@dataclass(frozen=True)
class VerifiedToken:
    """The claims the dashboard uses from a token that passed every check."""

    subject: str
    role: Role
    expires_at: float
    issued_at: float


def load_auth_config(env: Mapping[str, str] | None = None) -> AuthConfig | None:
    """The verification settings, or None for open local mode (no key configured).

    >>> load_auth_config({}) is None
    True
    >>> load_auth_config({"DASHBOARD_JWT_SECRET": "x" * 32}).algorithm
    'HS256'
    >>> load_auth_config({"DASHBOARD_JWT_SECRET": "short"})
    Traceback (most recent call last):
    ...
    services.access.tokens.AuthConfigError: DASHBOARD_JWT_SECRET is 5 bytes; HS256 needs at least 32 random bytes \
(generate one with `python -m services.access secret`).
    """
    env = os.environ if env is None else env
    secret = env.get("DASHBOARD_JWT_SECRET", "").strip()
    public = env.get("DASHBOARD_JWT_PUBLIC_KEY", "").strip()
    issuer = env.get("DASHBOARD_JWT_ISSUER", "").strip() or DEFAULT_ISSUER
    audience = env.get("DASHBOARD_JWT_AUDIENCE", "").strip() or DEFAULT_AUDIENCE
    if secret and public:
        raise AuthConfigError(
            "Both DASHBOARD_JWT_SECRET and DASHBOARD_JWT_PUBLIC_KEY are set; set exactly one, so tokens are "
            "verified with one algorithm family."
        )
    if secret:
        if "-----BEGIN" in secret:
            raise AuthConfigError("DASHBOARD_JWT_SECRET holds a PEM key; put a public key in DASHBOARD_JWT_PUBLIC_KEY.")
        size = len(secret.encode())
        if size < MIN_SECRET_BYTES:
            raise AuthConfigError(
                f"DASHBOARD_JWT_SECRET is {size} bytes; HS256 needs at least {MIN_SECRET_BYTES} random bytes "
                "(generate one with `python -m services.access secret`)."
            )
        return AuthConfig("HS256", secret, issuer, audience, secret=secret)
    if public:
        key = _load_public_key(public)
        return AuthConfig(_algorithm_for(key), key, issuer, audience)
    return None


def key_configured(env: Mapping[str, str] | None = None) -> bool:
    """Whether sign-in is required (a key is set), without parsing it: cheap enough for every call."""
    env = os.environ if env is None else env
    return bool(env.get("DASHBOARD_JWT_SECRET", "").strip() or env.get("DASHBOARD_JWT_PUBLIC_KEY", "").strip())


def _load_public_key(value: str) -> Any:
    """PEM text (``\\n`` escapes allowed, for one-line environment variables) or a path to a PEM file."""
    if "-----BEGIN" in value:
        pem = value.replace("\\n", "\n")
    else:
        try:
            pem = Path(value).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise AuthConfigError(
                f"DASHBOARD_JWT_PUBLIC_KEY is neither PEM text nor a readable file ({exc.strerror})."
            ) from None
    if "PRIVATE KEY" in pem:
        raise AuthConfigError("DASHBOARD_JWT_PUBLIC_KEY holds a private key; give the dashboard the public key only.")
    try:
        return load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise AuthConfigError(f"DASHBOARD_JWT_PUBLIC_KEY is not a PEM public key: {exc}") from None


def _algorithm_for(key: Any) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise AuthConfigError(f"The RSA public key has {key.key_size} bits; at least {MIN_RSA_BITS} are needed.")
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        algorithm = _EC_ALGORITHMS.get(key.curve.name)
        if algorithm is None:
            raise AuthConfigError(f"The EC public key uses the curve {key.curve.name}; use P-256 (ES256).")
        return algorithm
    raise AuthConfigError(
        f"DASHBOARD_JWT_PUBLIC_KEY is a {type(key).__name__}; only RSA (RS256) and EC (ES256) keys are accepted."
    )


# ---- verification -------------------------------------------------------------------------------

def _fingerprint(token: str) -> str:
    """A short digest for correlating log lines; the token itself is never logged."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:12]


def _quoted(value: Any, limit: int = 40) -> str:
    """Attacker-chosen text (a header's alg, a role claim) made safe for a message and a log line."""
    text = re.sub(r"[^\x20-\x7e]", "?", str(value))
    return repr(text[:limit] + ("…" if len(text) > limit else ""))


def _unverified(token: str, part: Literal["header", "payload"]) -> dict[str, Any]:
    """Header or claims WITHOUT verification, only to explain a refusal; never trusted for access."""
    try:
        if part == "header":
            return jwt.get_unverified_header(token)
        return jwt.decode(token, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError, TypeError):
        return {}


def _refuse(reason: Reason, message: str, detail: str, token: str, source: str) -> AuthError:
    log.warning(
        "sign-in refused: %s (%s) via %s [token sha256:%s, %d bytes]",
        REASON_TITLES[reason].lower(), detail, source, _fingerprint(token), len(token.encode("utf-8", "replace")),
    )
    return AuthError(reason, message)


def verify_token(token: str | None, config: AuthConfig, *, source: str = "token") -> VerifiedToken:
    """Check a token completely; any refusal is an ``AuthError`` with a precise, loggable reason.

    ``source`` (header, form, link, cli) only goes into the log line.
    """
    token = (token or "").strip()
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    if not token:
        raise AuthError("not_signed_in", "Sign in with the access token you were given.")
    size = len(token.encode("utf-8", "replace"))
    if size > MAX_TOKEN_BYTES:
        raise _refuse("invalid", f"The token is too large ({size:,} bytes; a dashboard token is at most "
                      f"{MAX_TOKEN_BYTES:,}).", "too large, not decoded", token, source)
    if not token.isascii():
        raise _refuse("invalid", "This is not a token: it contains characters a JWT never has.",
                      "non-ASCII characters", token, source)
    try:
        claims = jwt.PyJWT(options={"enforce_minimum_key_length": True}).decode(
            token,
            config.verify_key,
            algorithms=[config.algorithm],
            audience=config.audience,
            issuer=config.issuer,
            leeway=LEEWAY_S,
            options={"require": list(REQUIRED_CLAIMS)},
        )
    except jwt.ExpiredSignatureError:
        subject = _unverified(token, "payload").get("sub", "?")
        raise _refuse("expired", "Your session has expired. Sign in again with a fresh token.",
                      f"expired token of sub={_quoted(subject)}", token, source) from None
    except jwt.ImmatureSignatureError:
        raise _refuse("invalid", "The token is not valid yet (issued or valid from a time in the future; "
                      "check the clocks).", "not yet valid (iat/nbf in the future)", token, source) from None
    except jwt.InvalidAudienceError:
        raise _refuse("invalid", f"The token was issued for another application (this dashboard expects "
                      f"audience {config.audience!r}).", "wrong audience", token, source) from None
    except jwt.InvalidIssuerError:
        raise _refuse("invalid", f"The token was issued by someone else (this dashboard expects issuer "
                      f"{config.issuer!r}).", "wrong issuer", token, source) from None
    except jwt.MissingRequiredClaimError as exc:
        raise _refuse("invalid", f"The token lacks the required {exc.claim!r} claim.",
                      f"missing claim {exc.claim}", token, source) from None
    except jwt.InvalidAlgorithmError:
        alg = _quoted(_unverified(token, "header").get("alg", "?"))
        raise _refuse("invalid", f"The token is signed with {alg}; this dashboard only accepts {config.algorithm}.",
                      f"algorithm {alg} not allowed", token, source) from None
    except jwt.InvalidSignatureError:
        raise _refuse("invalid", "The token's signature does not match: it was signed with another key.",
                      "bad signature", token, source) from None
    except jwt.DecodeError as exc:
        raise _refuse("invalid", "This is not a valid token: it could not be decoded. Paste the whole token, "
                      "without quotes or spaces.", f"malformed: {exc}", token, source) from None
    except jwt.InvalidTokenError as exc:
        raise _refuse("invalid", f"The token was refused: {exc}.", f"{type(exc).__name__}: {exc}",
                      token, source) from None
    except jwt.InvalidKeyError as exc:
        # Not an InvalidTokenError: with the algorithm pinned it means a key/configuration problem.
        log.error("JWT key problem while verifying (check the dashboard's key configuration): %s", exc)
        raise _refuse("invalid", "The token could not be checked against this dashboard's key.",
                      f"InvalidKeyError: {exc}", token, source) from None
    except jwt.PyJWTError as exc:  # PyJWKError, PyJWKSetError, PyJWKClientError and anything newer
        raise _refuse("invalid", "The token could not be checked.", f"{type(exc).__name__}: {exc}",
                      token, source) from None
    except (ValueError, TypeError) as exc:
        raise _refuse("invalid", "This is not a valid token.", f"{type(exc).__name__}: {exc}",
                      token, source) from None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.strip():
        raise _refuse("invalid", "The token does not say who it belongs to (empty 'sub').", "empty sub",
                      token, source)
    role = claims.get("role")
    if role not in ROLES:
        raise _refuse("forbidden", f"The token is valid but its role {_quoted(role)} is not one this dashboard "
                      f"grants ({', '.join(ROLES)}). Ask an admin for a token with a role.",
                      f"role {_quoted(role)} of sub={_quoted(subject)}", token, source)
    log.info("signed in: sub=%s role=%s via %s [token sha256:%s]", _quoted(subject, 80), role, source,
             _fingerprint(token))
    return VerifiedToken(subject=subject.strip(), role=role, expires_at=float(claims["exp"]),
                         issued_at=float(claims["iat"]))


def is_expired(expires_at: float | None, now: float | None = None) -> bool:
    """The same rule pyjwt applies at sign-in, for the check on every rerun.

    >>> is_expired(1000.0, now=1000.0 + LEEWAY_S - 1), is_expired(1000.0, now=1000.0 + LEEWAY_S)
    (False, True)
    """
    if expires_at is None:
        return False
    return expires_at <= (time.time() if now is None else now) - LEEWAY_S


# ---- minting ------------------------------------------------------------------------------------

def parse_ttl(text: str) -> int:
    """Seconds from ``30d``, ``12h``, ``15m``, ``90s`` or a bare number of seconds.

    >>> parse_ttl("30d"), parse_ttl("12h"), parse_ttl("15m"), parse_ttl("90")
    (2592000, 43200, 900, 90)
    """
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text or "")
    if not match:
        raise ValueError(f"{text!r} is not a duration like 30d, 12h, 15m or 90s.")
    seconds = int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    if not 0 < seconds <= MAX_MINT_TTL_S:
        raise ValueError(f"The lifetime must be between 1 second and {MAX_MINT_TTL_S // 86400} days.")
    return seconds


def mint_token(config: AuthConfig, subject: str, role: Role, ttl_s: int, *, now: float | None = None) -> str:
    """A sign-in token for a person or a wall screen, accepted by ``verify_token`` with the same config."""
    if not config.can_mint:
        raise AuthConfigError(
            "This dashboard verifies tokens with a public key, so it cannot mint them: minting needs the private "
            "key, which stays with whoever issues your tokens. Mint there (same issuer, audience and 'role' "
            "claim), or configure DASHBOARD_JWT_SECRET instead."
        )
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}.")
    if not subject.strip():
        raise ValueError("The subject (--sub) must not be empty.")
    issued = int(time.time() if now is None else now)
    claims = {"iss": config.issuer, "aud": config.audience, "sub": subject.strip(), "role": role,
              "iat": issued, "exp": issued + int(ttl_s), "jti": uuid.uuid4().hex}
    return jwt.encode(claims, config.secret, algorithm="HS256")


