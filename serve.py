"""Start the dashboard: ``python serve.py [streamlit run options]`` (what ``make run`` and the image run).

It runs the startup checks first, so a refused configuration is one clear line and nothing starts; in
open local mode with no ``--server.address`` it adds ``127.0.0.1`` (Streamlit would otherwise listen on
every interface). Then it becomes ``streamlit run app.py``: the same process, the same checks again in
the server's lifespan, the same gate on every page as any other way of starting it.
"""

from __future__ import annotations

import os
import sys

from services.access.startup import StartupCheck, startup_args
from services.connections import connect
from services.errors import ConfigError, DashboardError, user_message


def main() -> None:
    try:
        args, check = startup_args(sys.argv[1:])
    except ConfigError as exc:
        sys.exit(f"serve.py: refusing to start: {exc}")
    sys.stderr.write(f"serve.py: {check.line}\n")
    say_if_no_ollama_answers(check)
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "streamlit", "run", "app.py", *args])


def say_if_no_ollama_answers(check: StartupCheck) -> None:
    """One look at the configured backends before starting, so a first ``make run`` says what is missing."""
    silent: list[str] = []
    for backend in [b for b in check.settings.backends if b.kind != "gateway"][:4]:  # a gateway needs a person
        client = connect(backend, check.settings, page_timeout_s=2.0, connect_timeout_s=2.0)
        try:
            client.version()
            return  # one answers: nothing to say
        except DashboardError as exc:
            silent.append(f"{backend.name}: {user_message(exc)}")
        finally:
            client.close()
    sys.stderr.write("serve.py: no Ollama answers yet. " + " ".join(silent) + " The dashboard starts anyway and "
                     "shows it on every page. To look around without Ollama, run `make demo` instead.\n")


if __name__ == "__main__":
    os.chdir(os.path.dirname(os.path.abspath(__file__)))
    main()
