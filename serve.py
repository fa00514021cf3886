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


def main() -> None:
    PagesManager.uses_pages_directory = False
    sys.argv = ["streamlit", "run", "app.py", *sys.argv[1:]]
    cli.main()


if __name__ == "__main__":
    main()
