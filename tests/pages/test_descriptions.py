"""The product studio page through AppTest: the real app script, real client and engine, the loopback stand-in."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from streamlit.testing.v1 import AppTest

from services.db import Database
from services.studio.batch import BatchManager
from services.studio.tabular import read_table_file
from services.studio.tasks import TaskParams
from services.studio.templates import TemplateStore
from tests.standin import StandinServer

PAGE = "pages/descriptions.py"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FR_REPLY = "Une robe rouge élégante et fluide, parfaite pour vos soirées de gala."


def page_text(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption] + [e.value for e in at.error]
                     + [s.value for s in at.success] + [i.value for i in at.info] + [c.value for c in at.code])


def assert_no_html(at: AppTest) -> None:
    assert all(not m.allow_html for m in at.markdown), "product and model text must never be rendered as HTML"


def test_single_product_description_with_stats_and_regenerate(open_page: Callable[..., AppTest],
                                                              app_env: StandinServer) -> None:
    app_env.state.configure(replies={"Product data": FR_REPLY})
    at = open_page(PAGE)
    assert not at.exception
    assert at.button(key="studio.single.again").disabled
    at.text_input(key="studio.single.description.product_type").set_value("robe de soirée")
    at.text_input(key="studio.single.description.colour").set_value("rouge")
    at.button(key="studio.single.go").click().run()
    assert not at.exception
    text = page_text(at)
    assert FR_REPLY in text and "tokens/s" in text and "template description@v2" in text and "1 attempt" in text
    assert "Done" in text and "after repair" not in text
    assert any(c.value == FR_REPLY for c in at.code)  # the copyable block
    body = app_env.state.requests_to("/api/chat")[-1]["body"]
    assert "robe de soirée" in body["messages"][-1]["content"] and body["options"]["temperature"] == 1.0
    assert not at.button(key="studio.single.again").disabled
    at.button(key="studio.single.again").click().run()
    assert len(app_env.state.requests_to("/api/chat")) == 2
    assert_no_html(at)


def test_missing_field_and_html_answers_are_refused_clearly(open_page: Callable[..., AppTest],
                                                            app_env: StandinServer) -> None:
    at = open_page(PAGE)
    at.button(key="studio.single.go").click().run()
    assert "Product type is empty" in page_text(at)
    assert app_env.state.requests_to("/api/chat") == []
    app_env.state.responder = lambda body: "<img src=x onerror=alert(1)> Une robe pour vos soirées."
    at.text_input(key="studio.single.description.product_type").set_value("<script>alert(1)</script>")
    at.button(key="studio.single.go").click().run()
    assert not at.exception
    assert "No valid output" in page_text(at) and "HTML markup" in page_text(at)
    assert all("<img" not in m.value for m in at.markdown)
    assert_no_html(at)


def test_compare_two_models_side_by_side(open_page: Callable[..., AppTest], app_env: StandinServer) -> None:
    app_env.state.configure(replies={"Product data": FR_REPLY})
    at = open_page(PAGE)
    at.segmented_control(key="studio.mode").set_value("compare").run()
    assert at.multiselect(key="studio.compare.models").value == ["llama3.2:1b", "qwen3:0.6b"]
    at.text_input(key="studio.compare.description.product_type").set_value("robe")
    at.button(key="studio.compare.go").click().run()
    assert not at.exception
    models = {r["body"]["model"] for r in app_env.state.requests_to("/api/chat")}
    assert models == {"llama3.2:1b", "qwen3:0.6b"}
    assert page_text(at).count("template description@v2") == 2


def test_batch_card_resumes_a_job_and_offers_downloads(open_page: Callable[..., AppTest],
                                                       app_env: StandinServer) -> None:
    app_env.state.configure(replies={"Product data": FR_REPLY})
    data_dir = Path(os.environ["DASHBOARD_DATA_DIR"])
    # A job left behind (created, never finished), as after a crash before its first row.
    other = BatchManager(Database.in_dir(data_dir), lambda _n: None)  # type: ignore[arg-type, return-value]
    job_id = other.create_job(read_table_file(str(FIXTURES / "products.csv")),
                              template=TemplateStore(data_dir).latest("description"), model="llama3.2:1b",
                              backend="local", params=TaskParams(), mapping={"product_type": "product_type",
                                                                            "name": "name"},
                              concurrency=2, owner="test")
    at = open_page(PAGE)
    at.segmented_control(key="studio.mode").set_value("batch").run()
    assert not at.exception
    assert at.selectbox(key="studio.batch.job").value == job_id
    assert "created: 0 / 6 rows" in page_text(at)
    at.button(key=f"studio.resume.{job_id}").click().run()
    deadline = time.monotonic() + 20
    while other.job(job_id).state != "finished" and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)  # the runner forgets itself just after recording the final state
    at.run()
    assert not at.exception
    assert other.progress(job_id).done == 6
    assert "6 done, 0 failed" in page_text(at)
    assert at.query_params["job"] == job_id  # a reload lands on the same job
    assert "finished: 6 / 6 rows · 6 done · 0 failed" in page_text(at)
    assert at.button(key=f"studio.retry.{job_id}").disabled  # nothing failed
    assert_no_html(at)


def test_template_editor_saves_a_new_version(open_page: Callable[..., AppTest], app_env: StandinServer) -> None:
    at = open_page(PAGE)
    at.segmented_control(key="studio.mode").set_value("templates").run()
    prompt = next(t for t in at.text_area if t.label == "Prompt")
    prompt.set_value(prompt.value + "\nMention the occasion.")
    next(b for b in at.button if b.label == "Save as new version").click().run()
    assert not at.exception
    assert "Saved description@v3" in page_text(at)
    assert at.selectbox(key="studio.tpl.description.version").options[0].startswith("v3")
    # The single-product form now runs the new version by default.
    app_env.state.configure(replies={"Product data": FR_REPLY})
    at.segmented_control(key="studio.mode").set_value("single").run()
    at.text_input(key="studio.single.description.product_type").set_value("robe")
    at.button(key="studio.single.go").click().run()
    assert "template description@v3" in page_text(at)
    assert "Mention the occasion." in app_env.state.requests_to("/api/chat")[-1]["body"]["messages"][-1]["content"]


# ---- repaired, retried and failed results -----------------------------------------------------------------

HABITS_REPLY = ("Voici une description élégante en français :\n\n« **Robe Lina**, une robe rouge en soie. Elle sublime "
                "vos soirées. Elle se porte aussi en journée. »\n\nN'hésitez pas à demander d'autres versions !")


def test_a_repaired_answer_shows_its_status_its_repairs_and_the_answer_before_repair(
        open_page: Callable[..., AppTest], app_env: StandinServer) -> None:
    app_env.state.responder = lambda body: HABITS_REPLY
    at = open_page(PAGE)
    at.text_input(key="studio.single.description.product_type").set_value("robe")
    at.button(key="studio.single.go").click().run()
    assert not at.exception
    text = page_text(at)
    assert "Done after repair" in text and "1 attempt" in text
    assert any(c.value == "Robe Lina, une robe rouge en soie. Elle sublime vos soirées." for c in at.code)
    assert "removed preamble" in text and "kept 2 of 3 sentences" in text
    assert any(e.label == "The model's answer before repair" for e in at.expander)
    assert len(app_env.state.requests_to("/api/chat")) == 1  # repaired, not re-asked
    assert_no_html(at)


def test_a_refused_answer_is_retried_with_feedback_and_the_attempts_are_shown(
        open_page: Callable[..., AppTest], app_env: StandinServer) -> None:
    answers = iter(["A red silk dress for your evenings, elegant and light.", FR_REPLY])
    app_env.state.responder = lambda body: next(answers)
    at = open_page(PAGE)
    at.text_input(key="studio.single.description.product_type").set_value("robe")
    at.button(key="studio.single.go").click().run()
    text = page_text(at).replace("\\", "")  # captions are escaped plain text
    assert FR_REPLY in text and "2 attempts" in text and "Refused attempts: 1: the text looks English" in text
    second = app_env.state.requests_to("/api/chat")[-1]["body"]["messages"]
    assert second[-2] == {"role": "assistant", "content": "A red silk dress for your evenings, elegant and light."}
    assert second[-1]["content"] == "Your answer is in English: write it in French."


def test_a_new_users_first_generate_on_small_models_succeeds(open_page: Callable[..., AppTest],
                                                             app_env: StandinServer) -> None:
    app_env.state.apply_profile("small_models")
    app_env.state.configure(tokens_per_second=2000)
    at = open_page(PAGE)
    assert at.selectbox(key="studio.single.model").options[:2] == ["llama3.2:1b", "phi3:mini"]
    at.text_input(key="studio.single.description.product_type").set_value("robe de soirée")
    at.text_input(key="studio.single.description.name").set_value("Robe Lina")
    at.button(key="studio.single.go").click().run()
    assert not at.exception
    result = at.session_state["studio.single.last"]["result"]
    assert result.ok and result.status in ("done", "repaired"), result.error
    assert not at.error


def test_batch_card_shows_failed_rows_with_their_product_and_full_error(open_page: Callable[..., AppTest],
                                                                      app_env: StandinServer) -> None:
    def responder(body: dict) -> str:
        prompt = "\n".join(m["content"] for m in body["messages"][-3:])  # not the few-shot turns
        if "Jupe Alba" in prompt:
            return "Une jupe " + "très " * 130 + "belle."  # one sentence over the limit: cannot be trimmed
        return "« " + FR_REPLY + " »" if "Robe Maëlle" in prompt else FR_REPLY

    app_env.state.responder = responder
    data_dir = Path(os.environ["DASHBOARD_DATA_DIR"])
    other = BatchManager(Database.in_dir(data_dir), lambda _n: None)  # type: ignore[arg-type, return-value]
    table = read_table_file(str(FIXTURES / "products.csv"))
    job_id = other.create_job(table, template=TemplateStore(data_dir).latest("description"), model="llama3.2:1b",
                              backend="local", params=TaskParams(), mapping={"product_type": "product_type",
                                                                            "name": "name"},
                              concurrency=2, owner="test")
    at = open_page(PAGE)
    at.segmented_control(key="studio.mode").set_value("batch").run()
    at.button(key=f"studio.resume.{job_id}").click().run()
    deadline = time.monotonic() + 30
    while other.job(job_id).state != "finished" and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    at.run()
    assert not at.exception
    progress = other.progress(job_id)
    assert (progress.done, progress.failed, progress.repaired) == (5, 1, 1)
    text = page_text(at)
    assert "finished: 6 / 6 rows · 5 done (1 after repair) · 1 failed" in text
    frame = at.dataframe[-1].value
    assert list(frame.columns)[:3] == ["row", "key:sku", "key:name"]  # which product each row is
    assert set(frame["status"]) == {"done", "done after repair", "failed"}
    expander = next(e for e in at.expander if e.label.startswith("Failed rows in full"))
    assert "cannot be cut at a sentence end" in "\n".join(c.value for c in expander.code)
    assert not at.button(key=f"studio.retry.{job_id}").disabled
    at.toggle(key=f"studio.only_failed.{job_id}").set_value(True).run()
    failed = at.dataframe[-1].value
    assert len(failed) == 1 and failed.iloc[0]["status"] == "failed" and failed.iloc[0]["attempts"] == 3
    assert_no_html(at)
