"""Typed settings from environment variables and the backends TOML file.

Backends are configuration, never free text typed in the UI: `OLLAMA_HOST` (Ollama's own convention),
`OLLAMA_API_KEY` (adds Ollama Cloud) and `DASHBOARD_BACKENDS_FILE` (a TOML list of named backends).
Secrets are referenced by the *name* of an environment variable, so the file can be committed.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.errors import InvalidInput
from services.resources import PANELS_FILE

BackendKind = Literal["ollama", "ollama-cloud", "gateway"]
BACKEND_KINDS: tuple[BackendKind, ...] = ("ollama", "ollama-cloud", "gateway")
DEFAULT_OLLAMA_PORT = 11434
OLLAMA_CLOUD_URL = "https://ollama.com"
GATEWAY_SECRET_MIN_BYTES = 32
DEFAULT_SLOTS = 2  # requests a batch keeps in flight on one backend (match its OLLAMA_NUM_PARALLEL)
MAX_SLOTS = 32


def parse_ollama_host(value: str | None) -> str:
    """Turn an ``OLLAMA_HOST`` value into a base URL, with the Ollama Go client's rules.

    >>> parse_ollama_host(None)
    'http://127.0.0.1:11434'
    >>> parse_ollama_host("")
    'http://127.0.0.1:11434'
    >>> parse_ollama_host("1.2.3.4")
    'http://1.2.3.4:11434'
    >>> parse_ollama_host("gpu-box")
    'http://gpu-box:11434'
    >>> parse_ollama_host(":5678")
    'http://127.0.0.1:5678'
    >>> parse_ollama_host("gpu-box:1234")
    'http://gpu-box:1234'
    >>> parse_ollama_host("http://gpu-box")
    'http://gpu-box:80'
    >>> parse_ollama_host("https://gpu-box")
    'https://gpu-box:443'
    >>> parse_ollama_host("https://gpu-box:8443/ollama/")
    'https://gpu-box:8443/ollama'
    >>> parse_ollama_host("gpu-box:1234/prefix")
    'http://gpu-box:1234/prefix'
    >>> parse_ollama_host("0.0.0.0")
    'http://127.0.0.1:11434'
    >>> parse_ollama_host("[::1]:11435")
    'http://[::1]:11435'
    >>> parse_ollama_host("::")
    'http://[::1]:11434'
    >>> parse_ollama_host("ollama.com")
    'https://ollama.com:443'
    >>> parse_ollama_host("  http://localhost:11434  ")
    'http://localhost:11434'
    """
    raw = (value or "").strip()
    if not raw:
        return f"http://127.0.0.1:{DEFAULT_OLLAMA_PORT}"
    scheme, sep, rest = raw.partition("://")
    if not sep:
        scheme, rest = "http", raw
    scheme = scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidInput(f"OLLAMA_HOST must use http or https, not {scheme!r}: {raw!r}")
    hostport, slash, path = rest.partition("/")
    path = ("/" + path).rstrip("/") if slash else ""
    host, port = _split_host_port(hostport)
    if not sep and host == "ollama.com":
        scheme = "https"
    if port is None:
        if sep:
            port = 443 if scheme == "https" else 80
        elif host == "ollama.com":
            port = 443
        else:
            port = DEFAULT_OLLAMA_PORT
    host = host or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}{path}"


def _split_host_port(hostport: str) -> tuple[str, int | None]:
    """Split ``host:port``, ``[v6]:port``, ``:port`` or a bare IPv6 address."""
    if hostport.startswith("["):
        host, _, tail = hostport[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    elif hostport.count(":") > 1:
        return hostport, None
    else:
        host, _, port_text = hostport.partition(":")
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InvalidInput(f"Invalid port in OLLAMA_HOST: {hostport!r}")
    return host, int(port_text)


@dataclass(frozen=True)
class Backend:
    """One named connection to an Ollama API (local, remote, cloud, or behind the company gateway)."""

    name: str
    kind: BackendKind
    url: str
    api_key: str = field(default="", repr=False)
    gateway_secret: str = field(default="", repr=False)
    gateway_audience: str = "ai-gateway"
    gateway_issuer: str = "ollama-dashboard"
    verify_tls: bool = True
    slots: int = DEFAULT_SLOTS  # a batch's requests in flight here at once (``slots = N`` in the backends file)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.kind}, {self.url})"


@dataclass(frozen=True)
class Settings:
    """Everything the dashboard reads from its environment, resolved once per process."""

    backends: tuple[Backend, ...]
    data_dir: Path
    connect_timeout_s: float = 5.0
    page_timeout_s: float = 5.0
    load_timeout_s: float = 600.0
    stall_timeout_s: float = 120.0
    stream_interval_s: float = 0.05
    stream_interval_per_char_s: float = 2e-6
    slow_response_ms: float = 5000.0
    metrics_port: int = 9464
    prometheus_url: str = ""
    # Monitoring (issue 5): the prober, its SQLite history, the wall screen and the Prometheus panels.
    metrics_addr: str = "127.0.0.1"
    probe_interval_s: float = 10.0
    probe_timeout_s: float = 10.0
    probe_retention_days: float = 7.0
    canary_model: str = ""
    canary_interval_s: float = 300.0
    canary_timeout_s: float = 60.0
    kiosk_refresh_s: float = 5.0
    panels_file: Path = PANELS_FILE
    prometheus_timeout_s: float = 5.0
    timezone: str = ""  # DASHBOARD_TZ, an IANA name; "" is the server's own zone
    # Chat history: conversations kept per person, removed after this many days without activity,
    # and at most this many per person (the oldest go first).
    chat_retention_days: float = 90.0
    chat_max_conversations: int = 2_000

    def zone(self) -> tzinfo:
        """The zone clocks are shown in: ``DASHBOARD_TZ``, else the server's local zone."""
        if self.timezone:
            return ZoneInfo(self.timezone)
        return datetime.now().astimezone().tzinfo or ZoneInfo("UTC")
    # Jobs: PostgreSQL for several dashboard processes, the batch queue, job leases.
    database_url: str = field(default="", repr=False)
    batch_max_running: int = 2
    lease_ttl_s: float = 30.0

    def backend(self, name: str) -> Backend:
        for backend in self.backends:
            if backend.name == name:
                return backend
        raise InvalidInput(f"No backend named {name!r} is configured.")


METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "metadata.azure.com", "instance-data"})
# Cloud metadata services that are not link-local addresses (AWS's IPv6 endpoint is a ULA).
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")})


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host names literally, including the forms the OS resolver also accepts
    (``2852039166``, ``0xa9fea9fe``, ``0251.0376.0251.0376``) and IPv4-mapped IPv6."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if not re.fullmatch(r"[0-9a-fA-FxX.]+", host) or not any(c.isdigit() for c in host):
            return None
        try:
            address = ipaddress.ip_address(socket.inet_aton(host))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def validate_backend_url(url: str, *, allow_link_local: bool = False) -> str:
    """Refuse URLs that must never be a backend: other schemes, embedded credentials, metadata hosts.

    ``allow_link_local`` (``allow_link_local = true`` in the backends file) is the explicit opt-in for a
    real backend on a link-local address; cloud metadata endpoints stay refused even then.

    >>> validate_backend_url("https://gpu-box:11434")
    'https://gpu-box:11434'
    >>> validate_backend_url("http://user:pw@gpu-box")
    Traceback (most recent call last):
    ...
    services.errors.InvalidInput: Backend URL must not contain credentials: http://user:pw@gpu-box
    >>> validate_backend_url("http://169.254.169.254/latest")
    Traceback (most recent call last):
    ...
    services.errors.InvalidInput: Backend URL points at a link-local or metadata address: 169.254.169.254
    >>> validate_backend_url("http://2852039166/")
    Traceback (most recent call last):
    ...
    services.errors.InvalidInput: Backend URL points at a link-local or metadata address: 2852039166
    >>> validate_backend_url("http://[fe80::1%25eth0]:11434", allow_link_local=True)
    'http://[fe80::1%25eth0]:11434'
    >>> validate_backend_url("http://169.254.169.254", allow_link_local=True)
    Traceback (most recent call last):
    ...
    services.errors.InvalidInput: Backend URL points at a cloud metadata service: 169.254.169.254
    """
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018  (raises ValueError for a port out of range or not a number)
    except ValueError as exc:
        raise InvalidInput(f"Backend URL is not a valid URL ({exc}): {url}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidInput(f"Backend URL must be http or https: {url}")
    if parts.username or parts.password or "@" in parts.netloc:
        raise InvalidInput(f"Backend URL must not contain credentials: {url}")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise InvalidInput(f"Backend URL has no host: {url}")
    if host in METADATA_HOSTS:
        raise InvalidInput(f"Backend URL points at a link-local or metadata address: {host}")
    address = _literal_address(host.split("%")[0])
    if address is None:
        return url.strip().rstrip("/")
    if address.is_multicast or address.is_unspecified:
        raise InvalidInput(f"Backend URL points at a multicast or unspecified address: {host}")
    if address in METADATA_ADDRESSES or (allow_link_local and address == ipaddress.ip_address("169.254.169.254")):
        raise InvalidInput(f"Backend URL points at a cloud metadata service: {host}")
    if address.is_link_local and not allow_link_local:
        raise InvalidInput(f"Backend URL points at a link-local or metadata address: {host}")
    return url.strip().rstrip("/")


def load_backends(env: Mapping[str, str]) -> tuple[Backend, ...]:
    """Backends from the TOML file when set, else from OLLAMA_HOST (plus Ollama Cloud with a key)."""
    path = env.get("DASHBOARD_BACKENDS_FILE", "").strip()
    if path:
        return _backends_from_file(Path(path), env)
    # The same validation as the backends file: OLLAMA_HOST must not name a metadata service or carry credentials.
    try:
        local_url = validate_backend_url(parse_ollama_host(env.get("OLLAMA_HOST")))
    except InvalidInput as exc:
        raise InvalidInput(f"OLLAMA_HOST is refused: {exc}") from None
    backends = [Backend(name="local", kind="ollama", url=local_url)]
    if env.get("OLLAMA_API_KEY"):
        backends.append(Backend(name="ollama-cloud", kind="ollama-cloud", url=validate_backend_url(OLLAMA_CLOUD_URL),
                                api_key=env["OLLAMA_API_KEY"]))
    return tuple(backends)


def _backends_from_file(path: Path, env: Mapping[str, str]) -> tuple[Backend, ...]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"DASHBOARD_BACKENDS_FILE {path} does not exist.") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"DASHBOARD_BACKENDS_FILE {path} is not valid TOML: {exc}") from None
    entries = document.get("backends")
    if not isinstance(entries, list) or not entries:
        raise InvalidInput(f"{path} must contain at least one [[backends]] table.")
    backends: list[Backend] = []
    for index, entry in enumerate(entries, start=1):
        where = f"{path} backend #{index}"
        if not isinstance(entry, dict):
            raise InvalidInput(f"{where} must be a table.")
        name = str(entry.get("name", "")).strip()
        kind = str(entry.get("kind", "ollama")).strip()
        if not name:
            raise InvalidInput(f"{where} needs a name.")
        if kind not in BACKEND_KINDS:
            raise InvalidInput(f"{where} ({name}): kind must be one of {', '.join(BACKEND_KINDS)}.")
        if any(b.name == name for b in backends):
            raise InvalidInput(f"{where}: the name {name!r} is used twice.")
        default_url = OLLAMA_CLOUD_URL if kind == "ollama-cloud" else ""
        raw_url = str(entry.get("url", default_url))
        url = validate_backend_url(parse_ollama_host(raw_url) if kind == "ollama" else raw_url,
                                   allow_link_local=entry.get("allow_link_local") is True)
        api_key = _secret(entry, "api_key_env", env, where)
        gateway_secret = _secret(entry, "jwt_secret_env", env, where)
        if kind == "gateway" and len(gateway_secret.encode()) < GATEWAY_SECRET_MIN_BYTES:
            raise InvalidInput(
                f"{where} ({name}): a gateway needs jwt_secret_env naming a variable that holds at least "
                f"{GATEWAY_SECRET_MIN_BYTES} random bytes (it mints one HS256 token per request)."
            )
        if kind == "ollama-cloud" and not api_key:
            api_key = env.get("OLLAMA_API_KEY", "")
        backends.append(
            Backend(
                name=name,
                kind=kind,  # type: ignore[arg-type]
                url=url,
                api_key=api_key,
                gateway_secret=gateway_secret,
                gateway_audience=str(entry.get("audience", "ai-gateway")),
                gateway_issuer=str(entry.get("issuer", "ollama-dashboard")),
                verify_tls=bool(entry.get("verify_tls", True)),
                slots=_slots(entry, where),
            )
        )
    return tuple(backends)


def _slots(entry: dict, where: str) -> int:
    value = entry.get("slots", DEFAULT_SLOTS)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SLOTS:
        raise InvalidInput(f"{where}: slots must be a whole number from 1 to {MAX_SLOTS}, not {value!r}.")
    return value


def _int(env: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidInput(f"{key} must be a whole number from {low} to {high}, not {raw!r}.")
    return int(raw)


def _secret(entry: dict, key: str, env: Mapping[str, str], where: str) -> str:
    variable = entry.get(key)
    if not variable:
        return ""
    value = env.get(str(variable), "")
    if not value:
        raise InvalidInput(f"{where}: environment variable {variable} (from {key}) is not set.")
    return value


def _float(env: Mapping[str, str], key: str, default: float, *, allow_zero: bool = False) -> float:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(f"{key} must be a number of seconds, not {raw!r}.") from None
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidInput(f"{key} must be positive, not {raw!r}.")
    return value


def _timezone(env: Mapping[str, str]) -> str:
    """``DASHBOARD_TZ`` checked against the zone database (``Europe/Paris``, ``UTC``; empty: the server's)."""
    name = env.get("DASHBOARD_TZ", "").strip()
    if not name:
        return ""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"DASHBOARD_TZ must be a time zone name such as Europe/Paris or UTC, not {name!r}.") from None
    return name


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from ``env`` (the process environment by default)."""
    env = os.environ if env is None else env
    port_text = env.get("DASHBOARD_METRICS_PORT", "9464").strip() or "9464"
    if not port_text.isdigit():
        raise InvalidInput(f"DASHBOARD_METRICS_PORT must be a port number, not {port_text!r}.")
    return Settings(
        backends=load_backends(env),
        data_dir=Path(env.get("DASHBOARD_DATA_DIR", "").strip() or "data"),
        connect_timeout_s=_float(env, "DASHBOARD_CONNECT_TIMEOUT", 5.0),
        page_timeout_s=_float(env, "DASHBOARD_PAGE_TIMEOUT", 5.0),
        load_timeout_s=_float(env, "DASHBOARD_LOAD_TIMEOUT", 600.0),
        stall_timeout_s=_float(env, "DASHBOARD_STALL_TIMEOUT", 120.0),
        stream_interval_s=_float(env, "DASHBOARD_STREAM_INTERVAL_MS", 50.0) / 1000.0,
        stream_interval_per_char_s=_float(env, "DASHBOARD_STREAM_INTERVAL_US_PER_CHAR", 2.0, allow_zero=True) / 1e6,
        slow_response_ms=_float(env, "DASHBOARD_SLOW_MS", 5000.0),
        metrics_port=int(port_text),
        prometheus_url=env.get("PROMETHEUS_URL", "").strip(),
        metrics_addr=(env.get("DASHBOARD_METRICS_ADDR", "").strip() or env.get("DASHBOARD_BIND", "").strip()
                      or "127.0.0.1"),
        probe_interval_s=_float(env, "DASHBOARD_PROBE_INTERVAL", 10.0),
        probe_timeout_s=_float(env, "DASHBOARD_PROBE_TIMEOUT", 10.0),
        probe_retention_days=_float(env, "DASHBOARD_PROBE_RETENTION_DAYS", 7.0),
        canary_model=env.get("DASHBOARD_CANARY_MODEL", "").strip(),
        canary_interval_s=_float(env, "DASHBOARD_CANARY_INTERVAL", 300.0),
        canary_timeout_s=_float(env, "DASHBOARD_CANARY_TIMEOUT", 60.0),
        kiosk_refresh_s=_float(env, "DASHBOARD_KIOSK_REFRESH_S", 5.0),
        panels_file=Path(env.get("DASHBOARD_PANELS_FILE", "").strip() or PANELS_FILE),
        prometheus_timeout_s=_float(env, "DASHBOARD_PROMETHEUS_TIMEOUT", 5.0),
        timezone=_timezone(env),
        chat_retention_days=_days(env, "DASHBOARD_CHAT_RETENTION_DAYS", 90.0),
        chat_max_conversations=_int(env, "DASHBOARD_CHAT_MAX_CONVERSATIONS", 2_000, 1, 1_000_000),
        database_url=env.get("DASHBOARD_DATABASE_URL", "").strip(),
        batch_max_running=_int(env, "DASHBOARD_BATCH_MAX_RUNNING", 2, 1, 64),
        lease_ttl_s=_float(env, "DASHBOARD_LEASE_TTL_S", 30.0),
    )


def _days(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise InvalidInput(f"{key} must be a number of days, not {raw!r}.") from None
    if not value > 0 or value == float("inf"):
        raise InvalidInput(f"{key} must be a positive number of days, not {raw!r}.")
    return value

