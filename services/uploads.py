"""Uploaded or stored JSON documents (decks, reports): size-limited, UTF-8, parsed, every problem an
``InvalidInput`` that names the document."""

from __future__ import annotations

import json
from typing import Any

from services.errors import InvalidInput


def load_json_document(data: str | bytes, *, what: str, max_bytes: int) -> Any:
    """Parse ``data`` as JSON; ``what`` names it in messages ("The deck file", "The report").

    >>> load_json_document(b'{"a": 1}', what="The deck file", max_bytes=100)
    {'a': 1}
    >>> load_json_document(b"{nope", what="The report", max_bytes=100)
    Traceback (most recent call last):
    ...
    services.errors.InvalidInput: The report is not valid JSON (Expecting property name enclosed in double quotes: \
line 1 column 2 (char 1)).
    """
    if isinstance(data, bytes):
        if len(data) > max_bytes:
            limit = f"{max_bytes // 1_000_000} MB" if max_bytes >= 1_000_000 else f"{max_bytes // 1000} kB"
            raise InvalidInput(f"{what} is larger than {limit}.")
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"{what} is not UTF-8 text.") from None
    try:
        return json.loads(data)
    except ValueError as exc:
        raise InvalidInput(f"{what} is not valid JSON ({exc}).") from None
