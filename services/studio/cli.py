"""``python -m services.studio``: a product-studio task over a whole CSV/XLSX file, headless, for scheduled jobs.

Same engine, same checks as the page, on one backend or spread over several (``--backend`` repeated, or
``--backends all``: every configured backend that has the model, each with its ``slots``). Exit status 0 only
when every row succeeded, 1 when some failed, 2 for bad input (a digest mismatch between backends included,
unless ``--allow-digest-mismatch``), 130 when interrupted::

    python -m services.studio --input products.csv --output out.xlsx --task description --model llama3.2:1b
    python -m services.studio ... --backends all
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd

from services import format as fmt
from services.config import Settings
from services.connections import connect
from services.db import open_store
from services.errors import DashboardError, InvalidInput, user_message
from services.ollama.client import OllamaClient
from services.studio.batch import BatchManager
from services.studio.batch_store import CLI_OWNER, MAX_CONCURRENCY, LaneSpec, Progress
from services.studio.fleet import plan_fleet
from services.studio.tasks import BATCH_TASKS, CLASSIFICATION_ROUTES, LANGUAGES, TaskParams, suggest_mapping
from services.studio.taxonomy_store import DEFAULT_REF, TaxonomyStore
from services.studio.templates import TemplateStore


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m services.studio",
        description="Run a product-studio task over every row of a CSV/XLSX file, with the dashboard's engine "
                    "and checks. Exit status 0 only when every row succeeded.",
    )
    parser.add_argument("--input", required=True, help="CSV or XLSX file with a header row")
    parser.add_argument("--output", required=True, help="where to write the results (.csv or .xlsx); every "
                        "input column is kept and result columns are added")
    parser.add_argument("--task", required=True, choices=BATCH_TASKS)
    parser.add_argument("--model", required=True, help="an installed model, e.g. llama3.2:1b")
    parser.add_argument("--backend", action="append", default=[], metavar="NAME",
                        help="a backend from the configuration; repeat it to spread the file over several "
                             "(default: the first configured one)")
    parser.add_argument("--backends", choices=["all"], help="all: every configured backend that has the model "
                        "(Ollama Cloud as overflow)")
    parser.add_argument("--allow-digest-mismatch", action="store_true",
                        help="run even when the backends hold different weights under the model's name")
    parser.add_argument("--concurrency", type=int, help=f"requests in flight per backend, 1-{MAX_CONCURRENCY} "
                        "(default: each backend's slots from the backends file, else 2; match OLLAMA_NUM_PARALLEL)")
    parser.add_argument("--language", choices=sorted(LANGUAGES), default="fr", help="output language (default fr)")
    parser.add_argument("--tone", default="elegant", help="tone of descriptions (default elegant)")
    parser.add_argument("--max-sentences", type=int, default=2)
    parser.add_argument("--max-chars", type=int, default=300)
    parser.add_argument("--template-version", type=int, help="template version (default: the latest)")
    parser.add_argument("--taxonomy", default=DEFAULT_REF, help=f"classification: the taxonomy's ref (default "
                        f"{DEFAULT_REF}; uploaded ones are name@vN)")
    parser.add_argument("--route", default="", choices=[r for r in CLASSIFICATION_ROUTES if r],
                        help="classification: how to choose (default: a shortlist, then level by level)")
    parser.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN",
                        help="map a task field to a column (repeatable); unmapped fields are matched by name")
    parser.add_argument("--data-dir", help="the dashboard's data directory (default: DASHBOARD_DATA_DIR or ./data)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    return parser.parse_args(argv)


def _write_output(path: Path, frame: pd.DataFrame) -> None:
    """Write to a temporary file and rename, so a crash never leaves a half-written result."""
    from services.studio.tabular import to_csv_bytes, to_xlsx_bytes

    data = to_xlsx_bytes(frame) if path.suffix.lower() in (".xlsx", ".xlsm") else to_csv_bytes(frame)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_bytes(data)
    os.replace(temp, path)


def _print_failures(manager: BatchManager, job_id: str, failed: int, limit: int = 20) -> None:
    """Which products failed and why: the row number, the product's own key columns, the attempts, the reason."""
    frame = manager.rows(job_id, status="failed", limit=limit)
    keys = [c for c in frame.columns if c.startswith("key:")]
    for record in frame.to_dict("records"):
        product = ", ".join(str(record[k]) for k in keys if str(record[k]).strip())
        print(f"  row {record['row']}{f' ({product})' if product else ''} failed after "
              f"{fmt.count(int(record['attempts']), 'attempt')}: {record['error']}", flush=True)
    if failed > limit:
        print(f"  … and {failed - limit} more failed rows (see the ai_status and ai_error columns)", flush=True)


def _lanes(args: argparse.Namespace, settings: Settings, clients: dict[str, OllamaClient]) -> list[LaneSpec]:
    """The backends to run on: the one named (or the first), or several after checking the model is the same."""
    if args.backends == "all":
        chosen = list(settings.backends)
    elif args.backend:
        chosen = [settings.backend(name) for name in args.backend]
    else:
        chosen = [settings.backends[0]]
    slots = args.concurrency
    if len(chosen) == 1:
        return [LaneSpec(chosen[0].name, slots or chosen[0].slots)]
    plan = plan_fleet(args.model, chosen, lambda b: clients[b.name])
    for entry in plan.entries:
        if not entry.has_model:
            why = entry.error or f"{args.model} is not installed there"
            if args.backends != "all":
                raise InvalidInput(f"The backend {entry.name!r} cannot run this batch: {why}.")
            print(f"note: skipping {entry.name}: {why}", file=sys.stderr, flush=True)
    if plan.mismatch and not args.allow_digest_mismatch:
        raise InvalidInput(f"{plan.mismatch_text()} Choose backends with --backend (e.g. "
                           f"{' '.join('--backend ' + n for n in plan.majority())}) or pass --allow-digest-mismatch.")
    lanes = plan.lanes()
    if not lanes:
        raise InvalidInput(f"None of the chosen backends has {args.model}.")
    overflow = len(lanes) > 1
    return [LaneSpec(lane.name, slots or lane.slots, overflow and lane.overflow, lane.digest) for lane in lanes]


def _progress_line(p: Progress) -> str:
    line = f"[{p.finished_rows}/{p.total}] done {p.done} failed {p.failed} eta {fmt.eta(p.eta_s)}"
    if len(p.lanes) > 1:
        line += " · " + ", ".join(f"{lane.name} {fmt.rate(lane.rows_per_s or 0.0, 'rows/s')}"
                                  + ("" if lane.state == "running" else f" ({lane.state})") for lane in p.lanes)
    return line + (f" · {p.paused}" if p.paused else "")


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    from services.config import load_settings
    from services.studio.tabular import read_table_file

    clients: dict[str, OllamaClient] = {}
    try:
        settings = load_settings()
        data_dir = Path(args.data_dir) if args.data_dir else settings.data_dir
        for backend in settings.backends:
            clients[backend.name] = connect(backend, settings)
        table = read_table_file(args.input)
        store = TemplateStore(data_dir)
        template = store.get(args.task, args.template_version)
        mapping = suggest_mapping(args.task, table.columns)
        for item in args.map:
            field_name, sep, column = item.partition("=")
            if not sep or field_name not in mapping:
                known = ", ".join(mapping)
                raise InvalidInput(f"--map {item!r}: expected FIELD=COLUMN with FIELD one of {known}.")
            mapping[field_name] = column
        params = TaskParams(language=args.language, tone=args.tone, max_sentences=args.max_sentences,
                            max_chars=args.max_chars, taxonomy=args.taxonomy if args.task == "classification" else "",
                            route=args.route if args.task == "classification" else "")
        output = Path(args.output)
        if output.suffix.lower() not in (".csv", ".xlsx", ".xlsm"):
            raise InvalidInput(f"--output must end in .csv or .xlsx, not {output.name!r}.")
        if args.concurrency is not None and not 1 <= args.concurrency <= MAX_CONCURRENCY:
            raise InvalidInput(f"--concurrency must be between 1 and {MAX_CONCURRENCY}, not {args.concurrency}.")
        lanes = _lanes(args, settings, clients)

        def client_for(name: str) -> OllamaClient:
            if name not in clients:
                raise InvalidInput(f"No backend named {name!r} is configured.")
            return clients[name]

        manager = BatchManager(open_store(data_dir, settings.database_url), client_for, backends=settings.backends,
                               adopt=False, lease_ttl_s=settings.lease_ttl_s,
                               taxonomies=TaxonomyStore(data_dir))
        job_id = manager.create_job(table, template=template, model=args.model, params=params, mapping=mapping,
                                    owner=CLI_OWNER, lanes=lanes)
    except DashboardError as exc:
        print(f"error: {user_message(exc)}", file=sys.stderr)
        return 2
    mapped = ", ".join(f"{k}<-{v}" for k, v in mapping.items() if v)
    where = ", ".join(f"{lane.name} ×{lane.slots}" + (" (overflow)" if lane.overflow else "") for lane in lanes)
    print(f"job {job_id}: {len(table)} rows of {table.source_name} ({', '.join(table.notes)}), task {template.ref}, "
          f"model {args.model} on {where}; mapping {mapped}", flush=True)
    started = time.monotonic()
    manager.start(job_id)
    interrupted = False
    try:
        last_print = 0.0
        while not manager.wait(job_id, timeout_s=0.5):
            if not args.quiet and time.monotonic() - last_print >= 1.0:
                last_print = time.monotonic()
                print(_progress_line(manager.progress(job_id)), flush=True)
    except KeyboardInterrupt:
        interrupted = True
        manager.cancel(job_id)
        manager.wait(job_id, timeout_s=10)
    manager.shutdown()
    progress = manager.progress(job_id)
    _write_output(Path(args.output), manager.results_frame(job_id))
    if not args.quiet:
        _print_failures(manager, job_id, progress.failed)
    elapsed = time.monotonic() - started
    attempts = manager.attempts(job_id)
    finished = progress.finished_rows
    per_row = f", {attempts / finished:.2f} requests per row" if finished else ""
    print(f"summary: {progress.done} done, {progress.failed} failed, {progress.pending + progress.running} not run, "
          f"of {progress.total} rows in {fmt.duration(elapsed)} ({progress.repaired} done after repair"
          f"{per_row}); wrote {args.output}", flush=True)
    for client in clients.values():
        client.close()
    if interrupted:
        return 130
    return 0 if progress.done == progress.total else 1


if __name__ == "__main__":
    sys.exit(main())
