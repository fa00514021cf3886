"""Classification at catalogue scale: the evaluation set (``catalog/eval/classification.jsonl``, 266 products,
French and English) through each route, and a 1,000-row batch, today's single request against level by level.

Per route and per model: exact-id accuracy, accuracy at depth 2 and 3 (the answer and the expected path agree on
their first 2 or 3 levels), requests and prompt tokens per product, time per product; the 6 code-only products
apart (they must be "not enough information" or a top level, never deeper).

Routes: today's single request (classification@v2: one ``format`` enum of the whole taxonomy, 25 lexical hints
in the prompt) on the 281-category subset shipped before, and on the full Google taxonomy (a sample: one enum of
5,595 paths per request is slow to send); a shortlist only; a shortlist then level by level (the default);
level by level; and the default again with a model that rarely says "None of these".

Where: the stand-in's ``classifier`` profile by default (its models "recognise" the evaluation products and err
with set odds, more for long option lists, French text and smaller models: the figures measure what each route
does to a model of a given skill, and the mechanics: requests, prompt size, the 4-request bound, never an
invented category; its times are a 1B model on a CPU scaled down ``TIME_SCALE`` times). With ``OLLAMA_HOST``
set, the same against that Ollama, with ``BENCH_MODELS`` (comma-separated; default: up to 3 installed) and
``BENCH_ROWS`` (products of the set, default all; batch rows 1,000 unless ``BENCH_BATCH_ROWS``).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from services.config import Backend, parse_ollama_host
from services.db import Database
from services.ollama.client import OllamaClient
from services.resources import CLASSIFICATION_EVAL_FILE
from services.studio.batch import BatchManager
from services.studio.classify import SHORTLIST_SIZE
from services.studio.engine import TaskResult, run_task
from services.studio.tabular import read_table
from services.studio.tasks import TaskParams
from services.studio.taxonomy import SEPARATOR, Taxonomy
from services.studio.taxonomy_search import shortlist
from services.studio.taxonomy_store import DEFAULT_REF, LEGACY_REF, TaxonomyStore
from services.studio.templates import Template, TemplateStore

TIME_SCALE = 0.005  # the stand-in's prompt reading and generation, 200 times faster than a 1B model on a CPU
SINGLE_FULL_ROWS = 40  # one enum of 5,595 paths per request is slow to send and parse: a sample of the set
WORKERS = 4
STANDIN_MODELS = ("llama3.2:1b", "qwen2.5:0.5b", "gemma2:2b", "phi3:mini")
ROUTES = (  # name, template version, taxonomy, route
    ("today: single request, subset", 2, LEGACY_REF, ""),
    ("single request, full Google", 2, DEFAULT_REF, ""),
    ("shortlist only", 3, DEFAULT_REF, "shortlist_only"),
    ("shortlist, then levels (default)", 3, DEFAULT_REF, "shortlist"),
    ("level by level", 3, DEFAULT_REF, "levels"),
)
DEFAULT = ROUTES[3]


def load_eval(limit: int | None = None) -> list[dict]:
    rows = [json.loads(line) for line in CLASSIFICATION_EVAL_FILE.read_text(encoding="utf-8").splitlines() if line]
    labelled = [r for r in rows if r.get("expected_path")]
    codes = [r for r in rows if not r.get("expected_path")]
    return (labelled[:limit] if limit else labelled) + codes


def agrees(expected: str, answer: str | None, levels: int | None) -> bool:
    """Exact (``levels`` None) or on the first ``levels`` levels (the expected path's own depth if shallower)."""
    if not answer:
        return False
    if levels is None:
        return answer == expected
    want = expected.split(SEPARATOR)[:levels]
    return answer.split(SEPARATOR)[: len(want)] == want


@dataclass
class Score:
    label: str
    results: list[tuple[dict, TaskResult]] = field(default_factory=list)
    seconds: float = 0.0

    def line(self, google: Taxonomy) -> str:
        labelled = [(r, res) for r, res in self.results if r.get("expected_path")]
        codes = [res for r, res in self.results if not r.get("expected_path")]
        n = len(labelled)

        def answer(res: TaskResult) -> str | None:
            return res.output if res.ok else None

        exact = sum(1 for r, res in labelled if answer(res) and google.id_of(res.output) == r["expected_id"])
        at2 = sum(agrees(r["expected_path"], answer(res), 2) for r, res in labelled)
        at3 = sum(agrees(r["expected_path"], answer(res), 3) for r, res in labelled)
        invented = sum(1 for _r, res in self.results if res.ok and res.output not in google and
                       not res.template_ref.endswith("v2"))
        requests = sum(res.attempts for _r, res in self.results) / len(self.results)
        tokens = sum(int(res.stats.get("prompt_eval_count") or 0) for _r, res in self.results) / len(self.results)
        per_product = self.seconds / len(self.results)
        most = max(res.attempts for _r, res in self.results)
        deep_codes = sum(1 for res in codes if res.ok and res.output.count(SEPARATOR) >= 1)
        return (f"{self.label:<32} exact {exact / n:6.1%}  depth2 {at2 / n:6.1%}  depth3 {at3 / n:6.1%}  "
                f"requests {requests:4.2f} (max {most})  prompt tokens {tokens:7.0f}  {per_product * 1000:7.1f} ms"
                f"/product  | codes: {len(codes) - sum(1 for r in codes if r.ok)} not enough info, "
                f"{deep_codes} below a top level{', ' + str(invented) + ' off the taxonomy' if invented else ''}")


def classify_all(client: OllamaClient, template: Template, model: str, rows: list[dict], params: TaskParams,
                 taxonomy: Taxonomy, label: str, workers: int) -> Score:
    def one(row: dict) -> tuple[dict, TaskResult]:
        return row, run_task(client, template, model, {"name": row["name"], "description": row["description"]},
                             params, taxonomy=taxonomy)

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(one, rows))
    return Score(label, results, time.perf_counter() - started)


def batch_throughput(client: OllamaClient, data_dir: Path, template: Template, model: str, params: TaskParams,
                     store: TaxonomyStore, rows: list[dict], count: int, concurrency: int) -> tuple[float, float, int]:
    """(rows per second, requests per row, rows done) of a ``count``-row classification batch."""
    products = [rows[i % len(rows)] for i in range(count)]
    body = "".join(f"{json.dumps(p['name'])};{json.dumps(p['description'])}\n" for p in products)
    table = read_table(("nom;description\n" + body).encode(), "bench.csv")
    manager = BatchManager(Database.in_dir(data_dir), lambda _n: client, taxonomies=store)
    job_id = manager.create_job(table, template=template, model=model, backend="bench", params=params,
                                mapping={"name": "nom", "description": "description"}, concurrency=concurrency,
                                owner="bench")
    started = time.perf_counter()
    manager.start(job_id)
    manager.wait(job_id)
    elapsed = time.perf_counter() - started
    progress = manager.progress(job_id)
    return count / elapsed, manager.attempts(job_id) / count, progress.done


def recall(google: Taxonomy, rows: list[dict]) -> str:
    """How often the lexical shortlist holds the expected category (or an ancestor of it), by language."""
    parts = []
    for language in ("fr", "en"):
        mine = [r for r in rows if r.get("expected_path") and r["language"] == language]
        full = sum(r["expected_path"] in shortlist(google, f"{r['name']} {r['description']}", SHORTLIST_SIZE)
                   for r in mine)
        parts.append(f"{language} {full / max(len(mine), 1):.0%}")
    return f"shortlist recall (the expected category among the {SHORTLIST_SIZE} offered): " + ", ".join(parts)


@contextmanager
def host() -> Iterator[tuple[OllamaClient, list[str], str, Callable[..., bool]]]:
    """The real Ollama at OLLAMA_HOST, else the stand-in (with a way to reset its answers between runs)."""
    raw = os.environ.get("OLLAMA_HOST", "").strip()
    if raw:
        url = parse_ollama_host(raw)
        client = OllamaClient(Backend(name="ollama", kind="ollama", url=url), stall_timeout_s=120)
        wanted = [m.strip() for m in os.environ.get("BENCH_MODELS", "").split(",") if m.strip()]
        installed = [m.name for m in client.tags() if "embedding" not in m.capabilities]
        yield client, wanted or installed[:3], f"a real Ollama at {url}", lambda **_odds: False
        client.close()
        return
    from tests.profiles.classifier import ClassifierResponder
    from tests.standin import StandinServer

    with StandinServer() as server:
        server.httpd.handle_error = lambda *_args: None  # type: ignore[method-assign]
        server.state.apply_profile("classifier")

        def reset(**odds: float) -> bool:
            server.state.configure(tokens_per_second=60.0 / TIME_SCALE)
            server.state.responder = ClassifierResponder(time_scale=TIME_SCALE, **odds)
            return True

        reset()
        client = OllamaClient(Backend(name="standin", kind="ollama", url=server.url), stall_timeout_s=30)
        where = f"the stand-in's classifier profile (times scaled down {1 / TIME_SCALE:.0f}x from a 1B model on a CPU)"
        yield client, list(STANDIN_MODELS), where, reset
        client.close()


def main() -> None:
    limit = int(os.environ["BENCH_ROWS"]) if os.environ.get("BENCH_ROWS") else None
    batch_rows = int(os.environ.get("BENCH_BATCH_ROWS", "1000"))
    rows = load_eval(limit)
    with tempfile.TemporaryDirectory() as tmp, host() as (client, models, where, reset):
        data_dir = Path(tmp)
        templates, store = TemplateStore(data_dir), TaxonomyStore(data_dir)
        google = store.get(DEFAULT_REF)
        print(f"Against {where}; {len(rows)} products ({sum(1 for r in rows if r['language'] == 'fr')} French), "
              f"{WORKERS} at a time")
        first = models[0]
        print(f"\nRoutes, model {first}:")
        scores: dict[str, Score] = {}
        for label, version, ref, route in ROUTES:
            reset()
            sample = rows if version == 3 or ref != DEFAULT_REF else [*rows[:SINGLE_FULL_ROWS], *rows[-6:]]
            score = classify_all(client, templates.get("classification", version), first, sample,
                                 TaskParams(taxonomy=ref, route=route), store.get(ref),
                                 label + (f" ({len(sample)})" if len(sample) != len(rows) else ""), WORKERS)
            scores[label] = score
            print("  " + score.line(google), flush=True)
        if reset(none_when_absent=0.2):  # how much the shortlist leans on the model saying "None of these"
            score = classify_all(client, templates.latest("classification"), first, rows,
                                 TaskParams(taxonomy=DEFAULT_REF, route="shortlist"), google,
                                 "shortlist+levels, none 20%", WORKERS)
            print("  " + score.line(google) + "\n  (the stand-in's model says \"None of these\" when the right "
                  "category is not offered 60 % of the time above, 20 % here)", flush=True)
        print("  " + recall(google, rows))
        print(f"\n{DEFAULT[0].capitalize()}, per model:")
        for model in models:
            reset()
            score = scores[DEFAULT[0]] if model == first else classify_all(
                client, templates.latest("classification"), model, rows, TaskParams(taxonomy=DEFAULT_REF), google,
                model, WORKERS)
            score.label = model
            print("  " + score.line(google), flush=True)
        print(f"\nA {batch_rows:,}-row classification batch, model {first}, concurrency {WORKERS}:")
        figures = {}
        for label, version, ref, route in (ROUTES[0], DEFAULT):
            reset()
            figures[label] = batch_throughput(client, data_dir / label.replace(" ", "_").replace(",", ""),
                                              templates.get("classification", version), first,
                                              TaskParams(taxonomy=ref, route=route), store, rows, batch_rows, WORKERS)
        (today_rate, today_req, _), (new_rate, new_req, _) = figures.values()
        for label, (rate, per_row, done) in figures.items():
            print(f"  {label:<32} {rate:7.1f} rows/s  {per_row:4.2f} requests/row  {done:,} done")
        print(f"  default / today: {new_rate / today_rate:.2f}x the rows per second, "
              f"{new_req / today_req:.2f}x the requests per row (today's lands code-only rows on a leaf and most "
              "others on a top level)")


if __name__ == "__main__":
    main()
