"""Who is acting right now, for code that calls a gateway on someone's behalf.

A ContextVar pair bound per script run (and by ``acting_as`` around work a job does for its owner), so the
process-wide clients never hold a person. Streamlit runs fragments and reruns on fresh threads where
ContextVars start empty; the caller then passes a ``fallback`` that reads the browser session.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

Actor = tuple[str, str | None]
ActorResolver = Callable[[], Actor | None]

acting_subject: ContextVar[str | None] = ContextVar("acting_subject", default=None)
acting_role: ContextVar[str | None] = ContextVar("acting_role", default=None)


@contextlib.contextmanager
def acting_as(subject: str, role: str | None = None) -> Iterator[None]:
    """Bind who is acting for the code inside (background jobs started on behalf of a person)."""
    subject_token = acting_subject.set(subject)
    role_token = acting_role.set(role)
    try:
        yield
    finally:
        acting_subject.reset(subject_token)
        acting_role.reset(role_token)


def bind_actor(subject: str | None, role: str | None) -> None:
    """Who acts for the rest of this script run (the router calls it once the session is signed in, and
    with ``None`` first, so nothing of an earlier run on the same thread survives)."""
    acting_subject.set(subject)
    acting_role.set(role)


def current_actor(fallback: ActorResolver | None = None) -> Actor | None:
    """The bound person, else what ``fallback`` finds (the browser session of this thread), else None.

    >>> current_actor() is None
    True
    >>> with acting_as("alice", "operator"):
    ...     current_actor()
    ('alice', 'operator')
    """
    subject = acting_subject.get()
    if subject:
        return subject, acting_role.get()
    return fallback() if fallback is not None else None
