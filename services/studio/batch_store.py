"""The batch tables and the records read from them: jobs (template, model, the backends and their slots, the
mapping, the state, the lease, counters kept up to date row by row) and their rows (one per product: status,
output, error, attempts, the repairs applied, which backend answered, timings), and the result columns of a
download.

The SQL is written once for SQLite and PostgreSQL (``services.db``). A job's counters (done, failed,
repaired, attempts, seconds) change in the same transaction as the row they count, so progress is one read of
one job row, whatever the size of the file; the rows in flight are the runner's own count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from services.studio.tasks import TaskParams
from services.studio.templates import Template

MAX_CONCURRENCY = 32  # slots on one backend
PAGE_SIZE = 256
RESULT_COLUMNS = ("ai_status", "ai_result", "ai_error", "ai_attempts", "ai_repairs", "ai_template", "ai_model",
                  "ai_seconds", "ai_backend")
# Column names that identify a product, in the order they are preferred as the row's key in the results table.
KEY_HINTS = ("sku", "ref", "reference", "référence", "réf", "id", "code", "ean", "gtin", "article", "code article")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS batch_jobs (
    id TEXT PRIMARY KEY,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
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
)""",
    """CREATE TABLE IF NOT EXISTS batch_rows (
    job_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    data_json TEXT NOT NULL,
    status TEXT NOT NULL,
    output TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    duration_s DOUBLE PRECISION,
    tokens INTEGER,
    template_ref TEXT NOT NULL DEFAULT '',
    updated_at DOUBLE PRECISION,
    PRIMARY KEY (job_id, idx)
)""",
    "CREATE INDEX IF NOT EXISTS batch_rows_status ON batch_rows (job_id, status, idx)",
)
# Columns added since the first release: created on new databases and added to older ones alike.
ADDED_COLUMNS: dict[str, dict[str, str]] = {
    "batch_rows": {"repairs": "TEXT NOT NULL DEFAULT ''", "backend": "TEXT NOT NULL DEFAULT ''"},
    "batch_jobs": {
        "backends_json": "TEXT NOT NULL DEFAULT ''",
        "queued_at": "DOUBLE PRECISION NOT NULL DEFAULT 0",
        "started_at": "DOUBLE PRECISION NOT NULL DEFAULT 0",
        "lease_owner": "TEXT NOT NULL DEFAULT ''",
        "lease_until": "DOUBLE PRECISION NOT NULL DEFAULT 0",
        "live_json": "TEXT NOT NULL DEFAULT ''",
        "counted": "INTEGER NOT NULL DEFAULT 0",  # 0: a job from before the counters, counted once on first read
        "done_count": "INTEGER NOT NULL DEFAULT 0",
        "failed_count": "INTEGER NOT NULL DEFAULT 0",
        "repaired_count": "INTEGER NOT NULL DEFAULT 0",
        "attempts_count": "INTEGER NOT NULL DEFAULT 0",
        "done_seconds": "DOUBLE PRECISION NOT NULL DEFAULT 0",
    },
}
INDEXES = ("CREATE INDEX IF NOT EXISTS batch_jobs_state ON batch_jobs (state, queued_at)",
           "CREATE INDEX IF NOT EXISTS batch_jobs_recent ON batch_jobs (created_at)")

# created: written, never started; queued: waiting for a place (at most N run at once); running: held by one
# dashboard process's lease; cancelled (Resume continues) and finished are final until someone acts.
JOB_STATES = ("created", "queued", "running", "cancelled", "finished")
ACTIVE_STATES = ("queued", "running")
CLI_OWNER = "cli"  # command-line jobs belong to their own process: no dashboard adopts them


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
class LaneSpec:
    """One backend a job runs on: its name, its slots (requests in flight there), and whether it is overflow
    (Ollama Cloud: it takes a row only when every slot of the others is taken or they are all paused)."""

    name: str
    slots: int
    overflow: bool = False
    digest: str = ""  # the model's weights there when the job was planned (empty: not checked)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "slots": self.slots, "overflow": self.overflow, "digest": self.digest}


@dataclass(frozen=True)
class LaneStats:
    """One backend's share of a running job, as the page and the wall screen show it."""

    name: str
    state: str  # "running", "paused", "probing", "removed", "idle"
    slots: int
    in_flight: int = 0
    done: int = 0  # rows this backend finished in this run (done or failed on their merits)
    handed_back: int = 0  # rows given back to the queue after this backend failed them
    rows_per_s: float | None = None
    error: str = ""  # why it is paused or removed
    retry_in_s: float | None = None
    overflow: bool = False

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> LaneStats:
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


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
    lanes: tuple[LaneSpec, ...] = ()
    queued_at: float = 0.0
    started_at: float = 0.0
    lease_owner: str = ""

    @property
    def backend_names(self) -> list[str]:
        return [lane.name for lane in self.lanes]

    @property
    def where(self) -> str:
        """The backends, as a person reads them: "gpu-1", "gpu-1, gpu-2 + ollama-cloud (overflow)"."""
        main = ", ".join(lane.name for lane in self.lanes if not lane.overflow)
        extra = ", ".join(lane.name for lane in self.lanes if lane.overflow)
        return main + (f" + {extra} (overflow)" if extra else "")


@dataclass(frozen=True)
class Progress:
    """Counts from the job's own counters, plus the live rate of the current run (None when idle)."""

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
    paused: str = ""  # why the job waits although it runs (every backend down, the database away)
    lanes: tuple[LaneStats, ...] = field(default_factory=tuple)
    queue_position: int | None = None  # 1 = next to start, while queued
    attempts: int = 0

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


def lanes_from_json(stored: str, backend: str, concurrency: int) -> tuple[LaneSpec, ...]:
    """The job's backends; a job from before several backends ran on one, at its concurrency."""
    if stored:
        return tuple(LaneSpec(**raw) for raw in json.loads(stored))
    return (LaneSpec(backend, concurrency),)


def job_from_row(row: Any) -> JobInfo:
    keys = set(row.keys())
    return JobInfo(
        id=row["id"], created_at=row["created_at"], owner=row["owner"], source_name=row["source_name"],
        task=row["task"], template=Template.from_dict(json.loads(row["template_json"])), model=row["model"],
        backend=row["backend"], params=TaskParams(**json.loads(row["params_json"])),
        mapping=json.loads(row["mapping_json"]), columns=json.loads(row["columns_json"]),
        concurrency=row["concurrency"], state=row["state"], total=row["total"], message=row["message"],
        lanes=lanes_from_json(row["backends_json"] if "backends_json" in keys else "", row["backend"],
                              row["concurrency"]),
        queued_at=row["queued_at"] or 0.0, started_at=row["started_at"] or 0.0, lease_owner=row["lease_owner"],
    )


def live_from_json(stored: str) -> dict[str, Any]:
    """The heartbeat's snapshot of a run (rate, ETA, pause, backends) for processes that do not run it."""
    if not stored:
        return {}
    try:
        live = json.loads(stored)
    except ValueError:
        return {}
    return live if isinstance(live, dict) else {}
