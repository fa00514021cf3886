"""Start Streamlit with ``app.py`` as the only router: ``python serve.py [streamlit run options]``.

The design keeps page files in ``pages/``, which Streamlit would also auto-discover (its v1 multipage
mode) until some session calls ``st.navigation``: a first visit straight to ``/chat`` would then run the
page without ``app.py`` (no sidebar, no checks). Turning that mode off before the server starts makes
``app.py`` run first for every page, every time.
"""

from __future__ import annotations

import sys

from streamlit.runtime.pages_manager import PagesManager
from streamlit.web import cli

from services.auth import AuthConfigError, startup_args


def main() -> None:
    PagesManager.uses_pages_directory = False
    try:
        args, startup_line = startup_args(sys.argv[1:])  # open local mode only on loopback; keys checked
    except AuthConfigError as exc:
        sys.exit(f"serve.py: refusing to start: {exc}")
    sys.stderr.write(f"serve.py: {startup_line}\n")
    sys.argv = ["streamlit", "run", "app.py", *args]
    cli.main()


if __name__ == "__main__":
    main()
