"""Every page of the dashboard and the least role that may open it, declared once.

The router builds its navigation from this registry (a role sees only what it may open), and every page
file's first line asks the router's gate for its own entry, so the check runs however Streamlit was
started. ``url_path`` is also the file's name under ``pages/``: Streamlit's own ``pages/`` discovery gives
a page that address, so both ways of reaching a page agree on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.access.roles import Role, allows


@dataclass(frozen=True)
class PageSpec:
    url_path: str
    title: str
    icon: str
    least_role: Role

    @property
    def script(self) -> str:
        return f"pages/{self.url_path}.py"


PAGES: tuple[PageSpec, ...] = (
    PageSpec("chat", "Chat", ":material/chat:", "operator"),
    PageSpec("monitoring", "Monitoring", ":material/monitor_heart:", "viewer"),
    PageSpec("models", "Models", ":material/deployed_code:", "operator"),
    PageSpec("descriptions", "Product studio", ":material/storefront:", "operator"),
    PageSpec("compare", "Compare models", ":material/compare:", "operator"),
    PageSpec("audit", "Audit log", ":material/policy:", "admin"),
)


def page_spec(url_path: str) -> PageSpec:
    """
    >>> page_spec("audit").least_role
    'admin'
    """
    for spec in PAGES:
        if spec.url_path == url_path:
            return spec
    raise KeyError(f"no page {url_path!r} in the registry")


def pages_for(role: str | None) -> list[PageSpec]:
    """The pages a role may open, in navigation order.

    >>> [p.url_path for p in pages_for("viewer")]
    ['monitoring']
    >>> pages_for(None)
    []
    """
    return [spec for spec in PAGES if allows(role, spec.least_role)]
