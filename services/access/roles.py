"""Roles and what each may do: viewer < operator < admin.

viewer: monitoring and the wall screen. operator: plus chat, product studio, compare, load/unload.
admin: plus pull, delete, copy, backends and the audit log. Every action checks its role on the
server side with ``require``; hiding a button is not a check.
"""

from __future__ import annotations

from typing import Literal

from services.errors import Forbidden

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")


def allows(role: str | None, needed: Role) -> bool:
    """
    >>> allows("admin", "operator"), allows("viewer", "operator"), allows(None, "viewer")
    (True, False, False)
    """
    if role not in ROLES:
        return False
    return ROLES.index(role) >= ROLES.index(needed)  # type: ignore[arg-type]


def require(role: str | None, needed: Role, action: str) -> None:
    if not allows(role, needed):
        raise Forbidden(f"Not allowed: {action} needs the {needed} role (you are {role or 'not signed in'}).")
