"""The files the dashboard reads at run time, found from one place and checked before it serves a page.

Templates, the taxonomies (the full Google product taxonomy with ids, and the subset used before it), the
extraction schema, the shipped prompt deck, the Prometheus panels, the page scripts and Streamlit's own
settings ship with the code (the Docker image copies the application as a whole, less what
``.dockerignore`` keeps out). Every path is absolute, from the application's own folder, so the working
directory never matters; ``missing_resources`` lists what is absent and the startup check refuses to start
with one clear line instead of failing at first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

APP_ROOT = Path(__file__).resolve().parents[1]
CATALOG_DIR = APP_ROOT / "catalog"
TEMPLATES_DIR = CATALOG_DIR / "templates"
TAXONOMIES_DIR = CATALOG_DIR / "taxonomies"
GOOGLE_TAXONOMY_FILE = TAXONOMIES_DIR / "google-product-taxonomy-with-ids.en-US.2021-09-21.txt"
# The 281-category subset the studio classified into before the full taxonomy shipped (jobs made then name it).
TAXONOMY_FILE = TAXONOMIES_DIR / "google-apparel-subset.2013-07-15.txt"
CLASSIFICATION_EVAL_FILE = CATALOG_DIR / "eval" / "classification.jsonl"
EXTRACTION_SCHEMA_FILE = CATALOG_DIR / "extraction.schema.json"
DECKS_DIR = APP_ROOT / "decks"
MONITORING_DIR = APP_ROOT / "monitoring"
PANELS_FILE = MONITORING_DIR / "panels.toml"
ALERT_RULES_FILE = MONITORING_DIR / "alerts.yml"
STATIC_DIR = APP_ROOT / "static"
FAVICON_FILE = STATIC_DIR / "favicon.png"
# Read by Streamlit from the working directory (serve.py starts there): without it, tracebacks would reach
# browsers and XSRF protection would be Streamlit's default.
STREAMLIT_CONFIG_FILE = APP_ROOT / ".streamlit" / "config.toml"
WALL_STYLE_FILE = STATIC_DIR / "wall.css"
WALL_SCRIPT_FILE = STATIC_DIR / "wall.js"
PRESENTER_STYLE_FILE = STATIC_DIR / "presenter.css"
PRESENTER_SCRIPT_FILE = STATIC_DIR / "presenter.js"

TEMPLATE_TASKS: tuple[str, ...] = ("description", "extraction", "classification", "column_mapping", "translation")

# What the application cannot run without, with what reads it (for the message when one is missing).
REQUIRED: dict[Path, str] = {
    **{TEMPLATES_DIR / f"{task}.toml": f"the product studio's {task} task" for task in TEMPLATE_TASKS},
    GOOGLE_TAXONOMY_FILE: "classification into the Google product taxonomy",
    TAXONOMY_FILE: "classification jobs made with the apparel subset",
    EXTRACTION_SCHEMA_FILE: "extraction",
    DECKS_DIR / "product-tasks.json": "the compare page's shipped prompt deck",
    PANELS_FILE: "the Prometheus panels of the monitoring page",
    ALERT_RULES_FILE: "the alerting rules Prometheus loads (shipped with the image for its compose stack)",
    FAVICON_FILE: "the page icon (served locally, never fetched from the internet)",
    STREAMLIT_CONFIG_FILE: "Streamlit's server settings (errors hidden from browsers, XSRF protection)",
    WALL_STYLE_FILE: "the wall screen's stylesheet",
    WALL_SCRIPT_FILE: "the wall screen's zoom and stale watchdog",
    PRESENTER_STYLE_FILE: "the compare page's presenter view",
    PRESENTER_SCRIPT_FILE: "the presenter view's keys and text fitting",
}


def missing_resources(root: Path = APP_ROOT, also: Mapping[Path, str] | None = None) -> list[str]:
    """One line per required file (``REQUIRED``, plus ``also``: the startup check adds the page scripts) that is
    absent or empty, relative to ``root``.

    >>> missing_resources()
    []
    >>> print(missing_resources(Path("/nonexistent"))[0])
    catalog/templates/description.toml (needed by the product studio's description task)
    """
    lines = []
    for path, needed_by in {**REQUIRED, **(also or {})}.items():
        relative = path.relative_to(APP_ROOT)
        target = root / relative
        if not target.is_file() or target.stat().st_size == 0:
            lines.append(f"{relative.as_posix()} (needed by {needed_by})")
    return lines
