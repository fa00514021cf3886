"""Start the dashboard: ``python serve.py [streamlit run options]`` (what ``make run`` and the image run).

It runs the startup checks first, so a refused configuration is one clear line and nothing starts; in
open local mode with no ``--server.address`` it adds ``127.0.0.1`` (Streamlit would otherwise listen on
every interface). Then it becomes ``streamlit run app.py``: the same process, the same checks again in
the server's lifespan, the same gate on every page as any other way of starting it.
"""

from __future__ import annotations

import os
import sys

from services.access.startup import startup_args
from services.errors import ConfigError


def main() -> None:
    try:
        args, check = startup_args(sys.argv[1:])
    except ConfigError as exc:
        sys.exit(f"serve.py: refusing to start: {exc}")
    sys.stderr.write(f"serve.py: {check.line}\n")
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "streamlit", "run", "app.py", *args])


if __name__ == "__main__":
    os.chdir(os.path.dirname(os.path.abspath(__file__)))
    main()
