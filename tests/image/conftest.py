"""Fixtures of the image tier: the stand-in, Chromium (the e2e tier's), a signing key, measurements."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ARTIFACTS, page  # noqa: F401  (a fresh page of the one Chromium, as in e2e)
from tests.image.walk import REPLY
from tests.standin import StandinServer

SECRET = "image-tier-" + "k" * 40
MEASUREMENTS = ARTIFACTS / "image-measurements.json"


@pytest.fixture(scope="module")
def image_standin() -> Iterator[StandinServer]:
    """The loopback Ollama stand-in, answering the description template with a French description."""
    with StandinServer() as server:
        server.state.configure(replies={"Product data": REPLY})
        yield server


def record_measurement(key: str, value: Any) -> None:
    """Figures for the closing note (image size, build and start times): read back by people, never asserted."""
    ARTIFACTS.mkdir(exist_ok=True)
    current = json.loads(MEASUREMENTS.read_text()) if MEASUREMENTS.is_file() else {}
    current[key] = value
    MEASUREMENTS.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")


def log_tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""
