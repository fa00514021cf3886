"""``python -m services.studio``: a product-studio task over a whole CSV/XLSX file, headless, for scheduled jobs.

Same engine, same checks as the page. Exit status 0 only when every row succeeded, 1 when some failed,
2 for bad input, 130 when interrupted::

    python -m services.studio --input products.csv --output out.xlsx --task description --model llama3.2:1b
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd

from services import format as fmt
from services.connections import connect
from services.db import Database
from services.errors import DashboardError, InvalidInput, user_message
from services.studio.batch import BatchManager
from services.studio.batch_store import MAX_CONCURRENCY
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
    parser.add_argument("--backend", help="backend name from the configuration (default: the first one)")
    parser.add_argument("--concurrency", type=int, default=2, help=f"requests in flight, 1-{MAX_CONCURRENCY} "
                        "(default 2; match the server's OLLAMA_NUM_PARALLEL)")
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


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    from services.config import load_settings
    from services.studio.tabular import read_table_file

    try:
        settings = load_settings()
        data_dir = Path(args.data_dir) if args.data_dir else settings.data_dir
        backend = settings.backend(args.backend) if args.backend else settings.backends[0]
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
        client = connect(backend, settings)
        manager = BatchManager(Database.in_dir(data_dir), lambda _name: client, taxonomies=TaxonomyStore(data_dir))
        job_id = manager.create_job(table, template=template, model=args.model, backend=backend.name,
                                    params=params, mapping=mapping, concurrency=args.concurrency, owner="cli")
    except DashboardError as exc:
        print(f"error: {user_message(exc)}", file=sys.stderr)
        return 2
    except KeyError as exc:
        print(f"error: no backend named {exc}", file=sys.stderr)
        return 2
    mapped = ", ".join(f"{k}<-{v}" for k, v in mapping.items() if v)
    print(f"job {job_id}: {len(table)} rows of {table.source_name} ({', '.join(table.notes)}), task {template.ref}, "
          f"model {args.model} on {backend.name}, concurrency {args.concurrency}; mapping {mapped}", flush=True)
    started = time.monotonic()
    manager.start(job_id)
    interrupted = False
    try:
        last_print = 0.0
        while not manager.wait(job_id, timeout_s=0.5):
            if not args.quiet and time.monotonic() - last_print >= 1.0:
                last_print = time.monotonic()
                p = manager.progress(job_id)
                print(f"[{p.finished_rows}/{p.total}] done {p.done} failed {p.failed} "
                      f"eta {fmt.eta(p.eta_s)}", flush=True)
    except KeyboardInterrupt:
        interrupted = True
        manager.cancel(job_id)
        manager.wait(job_id, timeout_s=10)
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
    if interrupted:
        return 130
    return 0 if progress.done == progress.total else 1


if __name__ == "__main__":
    sys.exit(main())
