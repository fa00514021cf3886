"""``python -m services.healthcheck``: the image's HEALTHCHECK, exit 0 when the server answers ``ok``.

It asks the address and port the server was told to use (``STREAMLIT_SERVER_ADDRESS`` and
``STREAMLIT_SERVER_PORT``, as the image sets them), so a container started on another port or on loopback
stays healthy. Only the standard library: it runs every few seconds and must start fast.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Mapping

TIMEOUT_S = 4.0
EVERY_INTERFACE = ("", "0.0.0.0", "::", "[::]")


def health_url(env: Mapping[str, str]) -> str:
    """Where the server's own health endpoint answers.

    >>> health_url({})
    'http://127.0.0.1:8501/_stcore/health'
    >>> health_url({"STREAMLIT_SERVER_ADDRESS": "0.0.0.0", "STREAMLIT_SERVER_PORT": "9000"})
    'http://127.0.0.1:9000/_stcore/health'
    >>> health_url({"STREAMLIT_SERVER_ADDRESS": "::1"})
    'http://[::1]:8501/_stcore/health'
    """
    address = env.get("STREAMLIT_SERVER_ADDRESS", "").strip()
    port = env.get("STREAMLIT_SERVER_PORT", "").strip() or "8501"
    host = "127.0.0.1" if address in EVERY_INTERFACE else address
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/_stcore/health"


def main() -> int:
    url = health_url(os.environ)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            healthy = response.status == 200 and response.read(16) == b"ok"
    except OSError as exc:
        sys.stderr.write(f"unhealthy: {url}: {exc}\n")
        return 1
    if not healthy:
        sys.stderr.write(f"unhealthy: {url} did not answer ok\n")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
