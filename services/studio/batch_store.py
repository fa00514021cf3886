"""The batch tables and the records read from them: jobs (template, model, backend, mapping, state) and their
rows (one per product: status, output, error, attempts, the repairs applied, timings), and the result columns
of a download.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from services.studio.tasks import TaskParams
from services.studio.templates import Template

MAX_CONCURRENCY = 16
PAGE_SIZE = 256
RESULT_COLUMNS = ("ai_status", "ai_result", "ai_error", "ai_attempts", "ai_repairs", "ai_template", "ai_model",
                  "ai_seconds")
# Column names that identify a product, in the order they are preferred as the row's key in the results table.
KEY_HINTS = ("sku", "ref", "reference", "référence", "réf", "id", "code", "ean", "gtin", "article", "code article")

SCHEMA = """
CREATE TABLE IF NOT EXISTS batch_jobs (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    owner TEXT NOT NULL,
    source_name TEXT NOT NULL,
    task TEXT NOT NULL,
    template_json TEXT NOT NULL,
    model TEXT NOT NULL,
    backend TEXT NOT NULL,
    params_json TEXT NOT NULL,
    mapping_json TEXT NOT NULL,
    columns_json TEXT NOT NULL,
    concurrency INTEGER NOT NULL,
    state TEXT NOT NULL,
    total INTEGER NOT NULL,
    message TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS batch_rows (
    job_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    data_json TEXT NOT NULL,
    status TEXT NOT NULL,
    output TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    duration_s REAL,
    tokens INTEGER,
    template_ref TEXT NOT NULL DEFAULT '',
    updated_at REAL,
    repairs TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (job_id, idx)
);
CREATE INDEX IF NOT EXISTS batch_rows_status ON batch_rows (job_id, status, idx);
"""

JOB_STATES = ("created", "running", "cancelled", "finished")
# Columns added since the first release, for databases created before them.
ADDED_ROW_COLUMNS = {"repairs": "TEXT NOT NULL DEFAULT ''"}


def migrate(conn: Any) -> None:
    """Add the row columns a database created by an earlier release lacks (SQLite has no IF NOT EXISTS here)."""
    present = {row[1] for row in conn.execute("PRAGMA table_info(batch_rows)").fetchall()}
    for name, spec in ADDED_ROW_COLUMNS.items():
        if name not in present:
            conn.execute(f"ALTER TABLE batch_rows ADD COLUMN {name} {spec}")


def row_outcome(status: str, repairs: str) -> str:
    """What a row's status column says: "done", "done after repair", "failed" or "not run"."""
    if status == "done":
        return "done after repair" if repairs else "done"
    return status if status == "failed" else "not run"


def repairs_text(stored: str) -> str:
    """The stored JSON list of repairs as one readable line."""
    if not stored:
        return ""
    try:
        items = json.loads(stored)
    except ValueError:
        return stored
    return "; ".join(str(i) for i in items) if isinstance(items, list) else str(items)


@dataclass(frozen=True)
class JobInfo:
    id: str
    created_at: float
    owner: str
    source_name: str
    task: str
    template: Template
    model: str
    backend: str
    params: TaskParams
    mapping: dict[str, str]
    columns: list[str]
    concurrency: int
    state: str
    total: int
    message: str


@dataclass(frozen=True)
class Progress:
    """Counts straight from SQLite, plus the live rate of the current run (None when idle)."""

    total: int
    pending: int
    running: int
    done: int
    failed: int
    state: str
    repaired: int = 0  # of the done rows, those kept after a repair
    rows_per_s: float | None = None
    eta_s: float | None = None
    elapsed_s: float | None = None

    @property
    def finished_rows(self) -> int:
        return self.done + self.failed

    @property
    def fraction(self) -> float:
        return self.finished_rows / self.total if self.total else 1.0


def result_column_names(columns: list[str], extra: tuple[str, ...] = ()) -> list[str]:
    """The result columns (and a task's ``extra`` ones), renamed if the file already uses one of their names."""
    taken = set(columns)
    names = []
    for name in (*RESULT_COLUMNS, *extra):
        candidate = name
        while candidate in taken:
            candidate = "_" + candidate
        taken.add(candidate)
        names.append(candidate)
    return names


def key_columns(job: JobInfo, limit: int = 3) -> list[str]:
    """The file's own columns that tell which product a row is: an identifier (SKU, reference, EAN...) when
    the file has one, then the columns mapped to the task's required fields and to the name."""
    folded = {c: c.strip().lower().replace("_", " ") for c in job.columns}
    keys: list[str] = []
    for hint in KEY_HINTS:
        keys += [c for c, f in folded.items() if f == hint and c not in keys]
        if keys:
            break
    for name in ("name", "product_type", "text"):
        column = job.mapping.get(name)
        if column and column not in keys:
            keys.append(column)
    return keys[:limit]


def job_from_row(row: Any) -> JobInfo:
    return JobInfo(
        id=row["id"], created_at=row["created_at"], owner=row["owner"], source_name=row["source_name"],
        task=row["task"], template=Template.from_dict(json.loads(row["template_json"])), model=row["model"],
        backend=row["backend"], params=TaskParams(**json.loads(row["params_json"])),
        mapping=json.loads(row["mapping_json"]), columns=json.loads(row["columns_json"]),
        concurrency=row["concurrency"], state=row["state"], total=row["total"], message=row["message"],
    )


