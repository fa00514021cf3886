"""Benchmarks (``python -m bench``); shared helpers for the ones that run the dashboard in-process."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


def _apply(values: Mapping[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@contextmanager
def scoped_env(**values: str | None) -> Iterator[None]:
    """Set (a value) or remove (None) environment variables for one benchmark and put them back after, so the
    next benchmark of the same ``python -m bench`` run sees the environment it was started with."""
    saved = {key: os.environ.get(key) for key in values}
    try:
        _apply(values)
        yield
    finally:
        _apply(saved)
