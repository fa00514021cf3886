"""The checks every start runs, however the dashboard is started (``serve.py``, ``streamlit run app.py``,
the Docker image): the files the app reads are present, the settings parse, one usable key or none,
sign-in required where it must be, and open local mode only on loopback. A refusal is one clear line,
before any page is served.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass

from services.access.pages import PAGES
from services.access.tokens import AuthConfig, AuthConfigError, load_auth_config
from services.config import Settings, load_settings
from services.errors import ConfigError, InvalidInput
from services.resources import APP_ROOT, missing_resources

OPEN_MODE_WARNING = ("OPEN LOCAL MODE: no DASHBOARD_JWT_SECRET or DASHBOARD_JWT_PUBLIC_KEY is set, so every visitor "
                     "is a local admin; served on loopback only.")


@dataclass(frozen=True)
class StartupCheck:
    """What a start that passed every check runs with, and the line it logs."""

    settings: Settings
    auth: AuthConfig | None
    line: str

    @property
    def open_mode(self) -> bool:
        return self.auth is None


def is_loopback(address: str) -> bool:
    """
    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("[::1]"), is_loopback("0.0.0.0")
    (True, True, True, False)
    >>> is_loopback("")
    False
    """
    host = address.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _require_auth(env: Mapping[str, str]) -> bool:
    return env.get("DASHBOARD_REQUIRE_AUTH", "").strip().lower() in ("1", "true", "yes")


def check_start(env: Mapping[str, str] | None = None, *, address: str | None) -> StartupCheck:
    """Run every start's checks; ``address`` is the one the server listens on (None or "" = every interface).

    Raises ``ConfigError`` (``AuthConfigError`` for the key) with one line that says what to change.

    >>> check_start({}, address="127.0.0.1").line
    'OPEN LOCAL MODE: no DASHBOARD_JWT_SECRET or DASHBOARD_JWT_PUBLIC_KEY is set, so every visitor is a local \
admin; served on loopback only.'
    >>> check_start({}, address="0.0.0.0")
    Traceback (most recent call last):
    ...
    services.errors.ConfigError: Open local mode (no DASHBOARD_JWT_SECRET or DASHBOARD_JWT_PUBLIC_KEY) only \
serves on loopback, not on 0.0.0.0: configure a key, or listen on 127.0.0.1 (--server.address 127.0.0.1).
    >>> check_start({"DASHBOARD_JWT_SECRET": "short"}, address="127.0.0.1")
    Traceback (most recent call last):
    ...
    services.access.tokens.AuthConfigError: DASHBOARD_JWT_SECRET is 5 bytes; HS256 needs at least 32 random bytes \
(generate one with `python -m services.access secret`).
    """
    env = os.environ if env is None else env
    missing = missing_resources(also={APP_ROOT / spec.script: f"the {spec.title} page" for spec in PAGES})
    if missing:
        raise ConfigError("Files the dashboard reads are missing (an incomplete checkout or image): "
                          + "; ".join(missing) + ".")
    try:
        settings = load_settings(env)
    except InvalidInput as exc:
        raise ConfigError(f"The configuration is invalid: {exc}") from None
    auth = load_auth_config(env)  # AuthConfigError: a key that is present but unusable
    if auth is not None:
        return StartupCheck(settings, auth, f"sign-in required: tokens verified with {auth.description}")
    if _require_auth(env):
        raise AuthConfigError(
            "DASHBOARD_REQUIRE_AUTH is set but no key is configured: set DASHBOARD_JWT_SECRET (32+ random bytes) "
            "or DASHBOARD_JWT_PUBLIC_KEY. Refusing to start in open mode."
        )
    if not address or not is_loopback(address):
        where = address or "every interface (no --server.address)"
        raise ConfigError(
            "Open local mode (no DASHBOARD_JWT_SECRET or DASHBOARD_JWT_PUBLIC_KEY) only serves on loopback, not on "
            f"{where}: configure a key, or listen on 127.0.0.1 (--server.address 127.0.0.1)."
        )
    return StartupCheck(settings, None, OPEN_MODE_WARNING)


def server_address(argv: list[str], env: Mapping[str, str]) -> str | None:
    """The ``--server.address`` a ``streamlit run`` command line (or its environment variable) asks for."""
    for index, arg in enumerate(argv):
        if arg == "--server.address" and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--server.address="):
            return arg.split("=", 1)[1]
    return env.get("STREAMLIT_SERVER_ADDRESS") or None


def startup_args(argv: list[str], env: Mapping[str, str] | None = None) -> tuple[list[str], StartupCheck]:
    """``serve.py``'s arguments for ``streamlit run``: in open local mode with no address given, 127.0.0.1.

    >>> startup_args(["--server.port", "8501"], {})[0]
    ['--server.port', '8501', '--server.address', '127.0.0.1']
    >>> startup_args(["--server.address", "0.0.0.0"], {"DASHBOARD_JWT_SECRET": "k" * 32})[0]
    ['--server.address', '0.0.0.0']
    """
    env = os.environ if env is None else env
    address = server_address(argv, env)
    args = list(argv)
    if address is None and not (env.get("DASHBOARD_JWT_SECRET", "").strip()
                                or env.get("DASHBOARD_JWT_PUBLIC_KEY", "").strip()):
        address = "127.0.0.1"  # Streamlit would otherwise listen on every interface
        args += ["--server.address", address]
    return args, check_start(env, address=address)
