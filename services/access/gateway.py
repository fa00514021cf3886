"""Tokens for the company gateway: one short-lived JWT per request, for the person acting, sent only there.

``gateway_auth_headers`` is what the composition root injects into a gateway backend's client: the Ollama
client itself never imports this package and never holds a person.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt

from services.access.acting import ActorResolver, current_actor
from services.access.tokens import MIN_SECRET_BYTES, AuthConfigError
from services.config import Backend
from services.errors import AuthError

GATEWAY_TTL_S = 300


def check_gateway_secret(backend: Backend) -> None:
    size = len(backend.gateway_secret.encode())
    if size < MIN_SECRET_BYTES:
        raise AuthConfigError(
            f"The gateway backend {backend.name} needs a JWT secret of at least {MIN_SECRET_BYTES} bytes "
            f"(jwt_secret_env); it has {size}."
        )


def mint_gateway_token(backend: Backend, subject: str, role: str | None = None, *, ttl_s: int = GATEWAY_TTL_S,
                       now: float | None = None) -> str:
    """A short-lived token for exactly one request to ``backend``: its audience, a fresh ``jti``."""
    check_gateway_secret(backend)
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"iss": backend.gateway_issuer, "aud": backend.gateway_audience, "sub": subject,
                              "iat": issued, "nbf": issued, "exp": issued + ttl_s, "jti": uuid.uuid4().hex}
    if role:
        claims["role"] = role
    return jwt.encode(claims, backend.gateway_secret, algorithm="HS256")




def gateway_auth_headers(backend: Backend, service: str | None = None,
                         actor: ActorResolver | None = None) -> Callable[[], dict[str, str]]:
    """The ``auth_headers`` callable for a gateway client: a new token on every call, never cached.

    ``service`` names a process-wide worker acting for nobody (the prober: ``service="dashboard-prober"``);
    without it the token's subject is the person acting (``actor`` finds them when no ContextVar is bound),
    and no person means no request.
    """
    if backend.kind != "gateway":
        raise ValueError(f"{backend.name} is not a gateway backend.")

    def headers() -> dict[str, str]:
        who = (service, "viewer") if service else current_actor(actor)
        if who is None:
            raise AuthError("not_signed_in", f"Nobody is signed in to act on the gateway backend {backend.name}.")
        subject, role = who
        return {"Authorization": f"Bearer {mint_gateway_token(backend, subject, role)}"}

    return headers
