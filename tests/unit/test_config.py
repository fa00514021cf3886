"""Settings and backends from the environment and the TOML file."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.config import load_backends, load_settings, validate_backend_url
from services.errors import InvalidInput

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "backends.toml"


def test_default_is_one_local_backend() -> None:
    (local,) = load_backends({})
    assert (local.name, local.kind, local.url) == ("local", "ollama", "http://127.0.0.1:11434")


def test_api_key_adds_ollama_cloud() -> None:
    local, cloud = load_backends({"OLLAMA_HOST": "gpu-box", "OLLAMA_API_KEY": "sk-1"})
    assert local.url == "http://gpu-box:11434"
    assert (cloud.kind, cloud.url, cloud.api_key) == ("ollama-cloud", "https://ollama.com", "sk-1")
    assert "sk-1" not in repr(cloud)


def test_the_committed_example_file_loads() -> None:
    backends = load_backends({"DASHBOARD_BACKENDS_FILE": str(EXAMPLE), "OLLAMA_API_KEY": "k",
                              "GATEWAY_JWT_SECRET": "s" * 32})
    assert [b.name for b in backends] == ["gpu-box", "cpu-box", "cloud", "gateway"]
    assert backends[1].url == "http://cpu-box:11434"
    assert backends[3].gateway_secret == "s" * 32


@pytest.mark.parametrize(
    "content,message",
    [("[[backends]\nname=", "not valid TOML"), ("title = 'x'", "at least one"),
     ("[[backends]]\nkind='ollama'", "needs a name"),
     ("[[backends]]\nname='a'\nkind='weird'", "kind must be"),
     ("[[backends]]\nname='a'\n[[backends]]\nname='a'", "used twice"),
     ("[[backends]]\nname='g'\nkind='gateway'\nurl='https://gw'\njwt_secret_env='NOPE'", "NOPE"),
     ("[[backends]]\nname='m'\nurl='http://169.254.169.254'", "metadata")],
)
def test_bad_backends_files_are_refused_precisely(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "backends.toml"
    path.write_text(content)
    with pytest.raises(InvalidInput, match=message):
        load_backends({"DASHBOARD_BACKENDS_FILE": str(path)})


def test_missing_file_is_named() -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        load_backends({"DASHBOARD_BACKENDS_FILE": "/nope/backends.toml"})


@pytest.mark.parametrize("url", ["ftp://x", "http://u:p@x", "http://[fe80::1]:80", "http://0.0.0.0", "http://"])
def test_unsafe_backend_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput):
        validate_backend_url(url)


def test_settings_timeouts_and_data_dir() -> None:
    settings = load_settings({"DASHBOARD_DATA_DIR": "/tmp/x", "DASHBOARD_STALL_TIMEOUT": "3.5"})
    assert settings.stall_timeout_s == 3.5 and str(settings.data_dir) == "/tmp/x"
    with pytest.raises(InvalidInput, match="DASHBOARD_LOAD_TIMEOUT"):
        load_settings({"DASHBOARD_LOAD_TIMEOUT": "soon"})


def test_dashboard_tz_names_the_wall_clock_zone_or_is_refused() -> None:
    from zoneinfo import ZoneInfo

    from services.config import load_settings

    assert load_settings({"DASHBOARD_TZ": "Europe/Paris"}).zone() == ZoneInfo("Europe/Paris")
    assert load_settings({}).timezone == "" and load_settings({}).zone() is not None  # the server's own
    for bad in ("Mars/Olympus", "../../etc/passwd", "Europe/"):
        with pytest.raises(InvalidInput, match="DASHBOARD_TZ must be a time zone name"):
            load_settings({"DASHBOARD_TZ": bad})
