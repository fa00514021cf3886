"""One way to print sizes, durations, rates and ETAs, for every page, the wall screen, exports and the CLI.

Sizes follow the Ollama CLI (``ollama list``, ``ollama ps``): decimal units, "637 MB", "1.3 GB", so a
number on a page matches the one an operator sees in a terminal. Durations are words a wall screen can
carry: "42 s", "4 min 03 s", "1 h 05 min".
"""

from __future__ import annotations

import math

MISSING = "–"
_UNITS = (("TB", 1000**4), ("GB", 1000**3), ("MB", 1000**2), ("KB", 1000))


def size(n: float | None) -> str:
    """Bytes as the Ollama CLI prints them.

    >>> size(1_321_098_329), size(637_000_000), size(990_823_746), size(999), size(0), size(None)
    ('1.3 GB', '637 MB', '990 MB', '999 B', '0 B', '–')
    >>> size(5_000_000_000), size(12_500_000_000)
    ('5 GB', '12 GB')
    """
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return MISSING
    value = float(n)
    for unit, scale in _UNITS:
        if abs(value) >= scale:
            scaled = value / scale
            if scaled >= 10 or scaled == math.trunc(scaled):
                return f"{int(scaled)} {unit}"
            return f"{scaled:.1f} {unit}"
    return f"{int(value)} B"


def duration(seconds: float | None) -> str:
    """A countdown, an ETA or an age, to the second.

    >>> duration(42), duration(4 * 60 + 3), duration(3900), duration(26 * 3600 + 120)
    ('42 s', '4 min 03 s', '1 h 05 min', '26 h 02 min')
    >>> duration(math.inf), duration(None), duration(0.4)
    ('forever', '–', '0 s')
    """
    if seconds is None or math.isnan(seconds):
        return MISSING
    if math.isinf(seconds):
        return "forever"
    whole = max(int(seconds), 0)  # floor: a countdown never shows more time than is left
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def eta(seconds: float | None) -> str:
    """Time left from a live rate; "–" while there is no rate yet.

    >>> eta(None), eta(95), eta(-3)
    ('–', '1 min 35 s', '0 s')
    """
    return duration(seconds)


def seconds(value: float | None, digits: int = 2) -> str:
    """A measured timing: milliseconds under one second, else seconds.

    >>> seconds(0.0734), seconds(2.345), seconds(None), seconds(12.0, 1)
    ('73 ms', '2.35 s', '–', '12.0 s')
    """
    if value is None or math.isnan(value):
        return MISSING
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.{digits}f} s"


def milliseconds(value: float | None) -> str:
    """
    >>> milliseconds(44.2), milliseconds(5234.0), milliseconds(None)
    ('44 ms', '5,234 ms', '–')
    """
    if value is None or math.isnan(value):
        return MISSING
    return f"{value:,.0f} ms"


def rate(value: float | None, unit: str = "tokens/s") -> str:
    """
    >>> rate(41.26), rate(None), rate(0.0)
    ('41.3 tokens/s', '–', '0.0 tokens/s')
    """
    if value is None or math.isnan(value):
        return MISSING
    return f"{value:,.1f} {unit}"


def transfer_rate(bytes_per_s: float | None) -> str:
    """
    >>> transfer_rate(12_400_000), transfer_rate(None)
    ('12 MB/s', '–')
    """
    return MISSING if bytes_per_s is None else f"{size(bytes_per_s)}/s"


def count(n: int, noun: str) -> str:
    """
    >>> count(1, "token"), count(1234, "token")
    ('1 token', '1,234 tokens')
    """
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def percent(fraction: float | None, digits: int = 0) -> str:
    """
    >>> percent(0.9934, 1), percent(0.5), percent(None)
    ('99.3 %', '50 %', '–')
    """
    if fraction is None or math.isnan(fraction):
        return MISSING
    return f"{fraction * 100:.{digits}f} %"


def unload_phrase(seconds_left: float | None) -> str:
    """When a loaded model leaves memory, as a whole phrase.

    >>> unload_phrase(math.inf), unload_phrase(None), unload_phrase(-2)
    ('stays loaded (keep-alive forever)', 'unload time unknown', 'unloading now')
    >>> unload_phrase(42), unload_phrase(3900)
    ('unloads in 42 s', 'unloads in 1 h 05 min')
    """
    if seconds_left is None:
        return "unload time unknown"
    if math.isinf(seconds_left):
        return "stays loaded (keep-alive forever)"
    if seconds_left <= 0:
        return "unloading now"
    return f"unloads in {duration(seconds_left)}"


def ago(seconds: float | None) -> str:
    """How long ago something last happened, coarse enough for a list (the chat history).

    >>> ago(20), ago(125), ago(3 * 3600 + 50), ago(26 * 3600), ago(40 * 86400), ago(None)
    ('just now', '2 min ago', '3 h ago', 'yesterday', '40 days ago', '–')
    """
    if seconds is None or math.isnan(seconds):
        return MISSING
    whole = max(int(seconds), 0)
    if whole < 60:
        return "just now"
    if whole < 3600:
        return f"{whole // 60} min ago"
    if whole < 86_400:
        return f"{whole // 3600} h ago"
    if whole < 2 * 86_400:
        return "yesterday"
    return f"{whole // 86_400} days ago"
