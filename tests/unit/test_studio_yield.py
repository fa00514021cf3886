"""The engine shaped by the brief, against the loopback stand-in: num_predict, stops, few-shot turns, repair,
retries with feedback, per-row status and repairs in a batch and its downloads, and the small_models profile."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

from services.db import Database
from services.ollama.client import OllamaClient
from services.ollama.wire import GenerationStats
from services.studio.batch import BatchManager
from services.studio.engine import Attempt, TaskRequest, build_request, run_task, was_truncated
from services.studio.tabular import read_table
from services.studio.tasks import TaskParams
from services.studio.taxonomy import Taxonomy
from services.studio.templates import TemplateStore
from tests.profiles.small_models import SmallModelResponder
from tests.standin import StandinServer

ROOT = Path(__file__).resolve().parents[2]
FR = "Une robe noire en soie, parfaite pour vos soirées. Elle se porte avec élégance."
PRODUCT = {"product_type": "robe", "name": "Robe Alba", "colour": "noir"}


@pytest.fixture
def store(tmp_path: Path) -> TemplateStore:
    return TemplateStore(tmp_path)


def chats(standin: StandinServer) -> list[dict]:
    return [r["body"] for r in standin.state.requests_to("/api/chat")]


def test_the_request_is_shaped_by_the_brief(store: TemplateStore) -> None:
    template = store.latest("description")
    request = build_request(template, PRODUCT, TaskParams(max_chars=300))
    assert request.options["num_predict"] == 198  # 300 characters / 3 per token x 1.5, plus 48 for a preamble
    assert build_request(template, PRODUCT, TaskParams(max_chars=1200)).options["num_predict"] == 648
    assert "\nN'hésitez" in request.options["stop"]
    roles = [m["role"] for m in request.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]  # two French examples
    assert request.messages[2]["content"].startswith("La robe Lina")
    assert "Robe Alba" in request.messages[-1]["content"]
    english = build_request(template, PRODUCT, TaskParams(language="en"))
    assert [m["content"][:12] for m in english.messages if m["role"] == "assistant"] == ["The Lina dre"]
    # An example that breaks this run's brief (two sentences when one is asked) is never sent.
    one = build_request(template, PRODUCT, TaskParams(max_sentences=1))
    assert [m["role"] for m in one.messages] == ["system", "user"]
    translation = build_request(store.latest("translation"), {"text": FR}, TaskParams(language="en"))
    assert translation.options["num_predict"] == 104  # from the original's length


def test_truncation_is_read_from_the_done_reason_or_the_token_count() -> None:
    request = TaskRequest(messages=[], options={"num_predict": 50})
    assert was_truncated(GenerationStats(eval_count=12, done_reason="length"), request)
    assert was_truncated(GenerationStats(eval_count=50, done_reason="stop"), request)
    assert not was_truncated(GenerationStats(eval_count=49, done_reason="stop"), request)


def test_a_repairable_answer_is_kept_after_one_request_with_its_repairs(client: OllamaClient, standin: StandinServer,
                                                                       store: TemplateStore) -> None:
    standin.state.responder = lambda body: f"Voici une description :\n\n« {FR} »\n\n#mode #robe"
    result = run_task(client, store.latest("description"), "llama3.2:1b", PRODUCT, TaskParams())
    assert result.ok and result.output == FR and result.status == "repaired" and result.attempts == 1
    assert result.status_label == "done after repair"
    assert result.repairs == ["removed preamble «Voici une description :»", "removed hashtags",
                              "removed surrounding quotes"]
    assert len(chats(standin)) == 1


def test_what_cannot_be_repaired_is_retried_with_feedback_then_failed_with_the_reason(
        client: OllamaClient, standin: StandinServer, store: TemplateStore) -> None:
    long = "Une robe " + "très " * 118 + "belle."
    standin.state.responder = lambda body: long
    seen: list[Attempt] = []
    result = run_task(client, store.latest("description"), "llama3.2:1b", PRODUCT, TaskParams(),
                      on_attempt=seen.append)
    assert not result.ok and result.output == "" and result.attempts == 3 and result.status == "failed"
    assert result.error.startswith("check failed 3 times; last: ") and "cannot be cut" in result.error
    bodies = chats(standin)
    assert len(bodies) == 3
    assert bodies[1]["messages"][-2] == {"role": "assistant", "content": long}
    assert bodies[1]["messages"][-1]["content"].startswith("Your answer's first sentence is")
    assert bodies[2]["messages"][:-2] == bodies[0]["messages"]  # only the last failed answer is echoed
    # The live view saw each attempt by number, with what the model had been told.
    assert sorted({a.number for a in seen}) == [1, 2, 3] and seen[-1].update.done
    assert seen[0].feedback == "" and seen[-1].feedback.startswith("Your answer's first sentence")


def test_without_repair_the_same_prompt_is_sent_again(client: OllamaClient, standin: StandinServer,
                                                      store: TemplateStore) -> None:
    answers = iter([f"Voici :\n{FR}", f"Voici :\n{FR}", FR])
    standin.state.responder = lambda body: next(answers)
    result = run_task(client, store.latest("description"), "llama3.2:1b", PRODUCT, TaskParams(max_chars=80),
                      repair=False, feedback=False)
    assert result.ok and result.attempts == 3 and result.repairs == []
    bodies = chats(standin)
    assert bodies[0]["messages"] == bodies[1]["messages"] == bodies[2]["messages"]


def test_classification_uses_the_taxonomy_it_is_given_and_refuses_an_ambiguous_answer(
        client: OllamaClient, standin: StandinServer, store: TemplateStore) -> None:
    company = Taxonomy.from_lines(["Vêtements > Robes", "Enfants > Robes", "Vêtements > Jupes"])
    answers = iter(['{"category": "Robes"}', '{"category": "Enfants > Robes"}'])
    standin.state.responder = lambda body: next(answers)
    # classification@v2: one request, the whole taxonomy as the enum (the single-request route).
    result = run_task(client, store.get("classification", 2), "llama3.2:1b", {"name": "Robe fille"},
                      TaskParams(check_language=False), taxonomy=company)
    assert result.ok and result.output == "Enfants > Robes" and result.attempts == 2
    assert "matches 2 categories equally" in result.rejections[0]
    first, second = chats(standin)
    assert first["format"]["properties"]["category"]["enum"] == list(company.paths)
    assert "- Vêtements > Robes\n- Enfants > Robes" in second["messages"][-1]["content"]


def test_a_batch_records_status_attempts_and_repairs_in_rows_downloads_and_the_summary(
        tmp_path: Path, client: OllamaClient, standin: StandinServer, store: TemplateStore) -> None:
    def responder(body: dict) -> str:
        prompt = body["messages"][-1]["content"] if body["messages"][-1]["role"] == "user" else ""
        if "Robe 2" in "\n".join(m["content"] for m in body["messages"][-3:]):
            return "<b>Une robe</b> noire."  # HTML: refused every time
        return f"« {FR} »" if "Robe 1" in prompt else FR

    standin.state.responder = responder
    manager = BatchManager(Database.in_dir(tmp_path), lambda _name: client)
    table = read_table(b"ref;type;nom\nA-1;robe;Robe 1\nA-2;robe;Robe 2\nA-3;robe;Robe 3\n", "cat.csv")
    job_id = manager.create_job(table, template=store.latest("description"), model="llama3.2:1b", backend="s",
                                params=TaskParams(), mapping={"product_type": "type", "name": "nom"},
                                concurrency=2, owner="t")
    manager.start(job_id)
    assert manager.wait(job_id, 30)
    progress = manager.progress(job_id)
    assert (progress.done, progress.repaired, progress.failed) == (2, 1, 1)
    rows = manager.rows(job_id)
    assert list(rows.columns[:4]) == ["row", "key:ref", "key:nom", "key:type"]
    assert rows["status"].tolist() == ["done after repair", "failed", "done"]
    assert rows.loc[0, "repairs"] == "removed surrounding quotes" and rows["attempts"].tolist() == [1, 3, 1]
    assert "HTML" in rows.loc[1, "error"] and "last answer: «<b>Une robe</b> noire.»" in rows.loc[1, "error"]
    frame = manager.results_frame(job_id)
    assert frame["ai_status"].tolist() == ["done after repair", "failed", "done"]
    assert frame["ai_repairs"].tolist() == ["removed surrounding quotes", "", ""]
    assert manager.attempts(job_id) == 5
    manager.shutdown()


def test_a_database_from_before_the_repairs_column_is_migrated(tmp_path: Path, client: OllamaClient) -> None:
    conn = sqlite3.connect(tmp_path / "dashboard.db")
    conn.executescript("CREATE TABLE batch_rows (job_id TEXT NOT NULL, idx INTEGER NOT NULL, data_json TEXT NOT NULL,"
                       " status TEXT NOT NULL, output TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT '',"
                       " attempts INTEGER NOT NULL DEFAULT 0, duration_s REAL, tokens INTEGER,"
                       " template_ref TEXT NOT NULL DEFAULT '', updated_at REAL, PRIMARY KEY (job_id, idx));")
    conn.close()
    db = Database.in_dir(tmp_path)
    BatchManager(db, lambda _name: client)
    columns = {r[1] for r in db.execute("PRAGMA table_info(batch_rows)").fetchall()}
    assert "repairs" in columns


def test_the_cli_summary_says_what_was_repaired_what_failed_and_requests_per_row(standin: StandinServer,
                                                                                 tmp_path: Path) -> None:
    def responder(body: dict) -> str:
        tail = "\n".join(m["content"] for m in body["messages"][-3:])
        if "Robe Iris" in tail:
            return "An English answer, which is not what was asked for here."
        return f"Voici :\n{FR}" if "Robe Lina" in body["messages"][-1]["content"] else FR

    standin.state.responder = responder
    data = tmp_path / "data"
    out = tmp_path / "out.csv"
    done = subprocess.run(
        [sys.executable, "-m", "services.studio", "--input", str(ROOT / "tests/fixtures/products.csv"), "--output",
         str(out), "--task", "description", "--model", "llama3.2:1b", "--data-dir", str(data)],
        cwd=ROOT, env={"OLLAMA_HOST": standin.url, "PATH": "/usr/bin:/bin", "DASHBOARD_DATA_DIR": str(data)},
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "summary: 5 done, 1 failed, 0 not run, of 6 rows" in done.stdout
    assert "(1 done after repair, 1.33 requests per row)" in done.stdout
    failed = [line for line in done.stdout.splitlines() if "failed after" in line]
    assert len(failed) == 1 and "row 3 (VL-003" in failed[0] and "3 attempts" in failed[0]
    frame = pd.read_csv(out, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    assert frame["ai_status"].value_counts().to_dict() == {"done": 4, "done after repair": 1, "failed": 1}


def test_the_small_models_profile_is_deterministic_and_faithful_to_the_server(store: TemplateStore) -> None:
    request = build_request(store.latest("description"), PRODUCT, TaskParams())
    body = {"model": "llama3.2:1b", "messages": request.messages, "options": request.options}
    first = [SmallModelResponder()(body), SmallModelResponder()(body)]
    assert first[0] == first[1]  # the same product gets the same answer in every run
    stopped = SmallModelResponder()({**body, "options": {"stop": ["soie"], "num_predict": 500}})
    assert "soie" not in stopped
    short = SmallModelResponder()({**body, "options": {"num_predict": 3}})
    assert len(short.split()) <= 3


def test_retry_failed_measures_its_eta_on_its_own_rows_and_keeps_every_attempt(
        tmp_path: Path, client: OllamaClient, standin: StandinServer, store: TemplateStore) -> None:
    gate = threading.Event()
    healthy = threading.Event()

    def responder(body: dict) -> str:
        if not healthy.is_set():
            return "An English answer, which is not what was asked for here."
        gate.wait(30)  # the retry's rows wait here until the test has looked at the progress
        return FR

    standin.state.responder = responder
    manager = BatchManager(Database.in_dir(tmp_path), lambda _name: client)
    table = read_table(("type;nom\n" + "".join(f"robe;Robe {i}\n" for i in range(4))).encode(), "c.csv")
    job_id = manager.create_job(table, template=store.latest("description"), model="llama3.2:1b", backend="s",
                                params=TaskParams(), mapping={"product_type": "type", "name": "nom"},
                                concurrency=2, owner="t")
    manager.start(job_id)
    assert manager.wait(job_id, 30)
    assert manager.progress(job_id).failed == 4 and manager.attempts(job_id) == 12
    healthy.set()
    assert manager.retry_failed(job_id) == 4
    during = manager.progress(job_id)
    # The first run's rows are not this run's throughput: no rate, no ETA until a retried row finishes.
    assert (during.rows_per_s, during.eta_s, during.failed) == (None, None, 0)
    assert during.pending + during.running == 4
    gate.set()
    assert manager.wait(job_id, 30)
    after = manager.progress(job_id)
    assert (after.done, after.failed) == (4, 0)
    assert manager.attempts(job_id) == 16  # every request sent for these rows, both runs
    manager.shutdown()
