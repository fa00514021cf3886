"""The settings of jobs across the fleet: each backend's slots, the running limit, the lease TTL and the database
URL, refused clearly when wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.config import DEFAULT_SLOTS, load_settings
from services.errors import InvalidInput


def backends_file(tmp_path: Path, extra: str) -> str:
    path = tmp_path / "backends.toml"
    path.write_text(f'[[backends]]\nname = "gpu"\nurl = "http://10.0.0.5:11434"\n{extra}\n'
                    '[[backends]]\nname = "cpu"\nurl = "cpu-box"\n')
    return str(path)


def test_slots_come_from_the_backends_file_with_a_default(tmp_path: Path) -> None:
    settings = load_settings({"DASHBOARD_BACKENDS_FILE": backends_file(tmp_path, "slots = 6")})
    assert [b.slots for b in settings.backends] == [6, DEFAULT_SLOTS]
    assert load_settings({}).backends[0].slots == DEFAULT_SLOTS


@pytest.mark.parametrize("value", ["0", "99", '"4"', "true", "2.5"])
def test_bad_slots_are_refused_with_the_backend_named(tmp_path: Path, value: str) -> None:
    with pytest.raises(InvalidInput, match=r"backend #1: slots must be a whole number from 1 to 32"):
        load_settings({"DASHBOARD_BACKENDS_FILE": backends_file(tmp_path, f"slots = {value}")})


def test_the_job_settings_and_their_bounds() -> None:
    settings = load_settings({"DASHBOARD_BATCH_MAX_RUNNING": "3", "DASHBOARD_LEASE_TTL_S": "12",
                              "DASHBOARD_DATABASE_URL": "postgresql://u:secret@db/dash"})
    assert (settings.batch_max_running, settings.lease_ttl_s) == (3, 12.0)
    assert settings.database_url == "postgresql://u:secret@db/dash" and "secret" not in repr(settings)
    defaults = load_settings({})
    assert (defaults.batch_max_running, defaults.lease_ttl_s, defaults.database_url) == (2, 30.0, "")
    with pytest.raises(InvalidInput, match="DASHBOARD_BATCH_MAX_RUNNING must be a whole number from 1 to 64"):
        load_settings({"DASHBOARD_BATCH_MAX_RUNNING": "0"})
