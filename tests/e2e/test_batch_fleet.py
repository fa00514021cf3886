"""A batch over three backends in a real browser at desk size: the plan with a digest mismatch decided before the
start, a backend answering 503 paused while the others work, each backend's throughput on the card, a second
file waiting its turn in the queue, and the log free of warnings."""

from __future__ import annotations

import csv
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.conftest import DashboardServer, goto, screenshot, start_dashboard, stop_dashboard, wait_for_app
from tests.e2e.test_descriptions import DESK, scroll_main_to_top, wait_for_progress
from tests.standin import StandinServer

FR_REPLY = "Une veste élégante et chaude, parfaite pour vos soirées d'hiver."


@pytest.fixture(scope="module")
def fleet() -> Iterator[dict[str, StandinServer]]:
    servers = {name: StandinServer().start() for name in ("atelier-gpu", "atelier-gpu-2", "bureau-cpu")}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def fleet_dashboard(fleet: dict[str, StandinServer], tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[DashboardServer]:
    tmp = tmp_path_factory.mktemp("fleet")
    slots = {"atelier-gpu": 4, "atelier-gpu-2": 4, "bureau-cpu": 2}
    backends = tmp / "backends.toml"
    backends.write_text("".join(f'[[backends]]\nname = "{name}"\nurl = "{server.url}"\nslots = {slots[name]}\n\n'
                                for name, server in fleet.items()))
    server = start_dashboard({"DASHBOARD_BACKENDS_FILE": str(backends), "DASHBOARD_BATCH_MAX_RUNNING": "1",
                              "DASHBOARD_STALL_TIMEOUT": "5"}, tmp)
    yield server
    stop_dashboard(server)
    assert not server.tracebacks(), server.log()
    assert not server.warnings(allowed=("OPEN LOCAL MODE",)), server.warnings()


def catalogue(tmp_path: Path, name: str, rows: int) -> Path:
    path = tmp_path / name
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerow(["Référence", "Type", "Nom", "Couleur"])
        writer.writerows([f"VH-{i:04d}", "veste", f"Veste Hiver {i}", "marine"] for i in range(1, rows + 1))
    return path


def test_a_batch_over_the_fleet_with_a_mismatch_a_paused_backend_and_a_queue(
        browser: Browser, fleet_dashboard: DashboardServer, fleet: dict[str, StandinServer], tmp_path: Path) -> None:
    gate = threading.Event()

    def held(body: dict) -> str:
        gate.wait(60)
        return FR_REPLY

    for name, server in fleet.items():
        server.state.reset()
        server.state.configure(replies={"Product data": FR_REPLY}, request_time_s=0.4 if name != "bureau-cpu" else 1.2)
    fleet["bureau-cpu"].state.models["llama3.2:1b"]["digest"] = "c" * 64  # other weights under the same name
    context = browser.new_context(viewport=DESK, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        goto(page, fleet_dashboard, "/descriptions?mode=batch")
        page.locator("input[type=file]").set_input_files(str(catalogue(tmp_path, "vestes-hiver.csv", 120)))
        expect(page.get_by_text("120 rows, 4 columns", exact=False)).to_be_visible(timeout=20_000)
        page.get_by_text("Every backend that has the model").click()
        wait_for_app(page)
        expect(page.get_by_text(re.compile("not the same model everywhere"))).to_be_visible()
        page.get_by_role("button", name="Run batch").scroll_into_view_if_needed()
        screenshot(page, "studio-batch-fleet-plan-1440x900")
        page.get_by_text(re.compile(r"^All of them")).click()
        wait_for_app(page)
        fleet["atelier-gpu-2"].state.configure(fault="busy")  # this one answers 503 to everything
        page.get_by_role("button", name="Run batch").click()
        wait_for_progress(page, r"running: [1-9]\d* / 120 rows")
        # A second file waits its turn (one batch at a time here), held until the test has looked.
        for server in fleet.values():
            server.state.responder = held
        page.locator("input[type=file]").set_input_files(str(catalogue(tmp_path, "vestes-printemps.csv", 10)))
        expect(page.get_by_text("10 rows, 4 columns", exact=False)).to_be_visible(timeout=20_000)
        page.get_by_role("button", name="Run batch").click()
        wait_for_app(page)
        expect(page.get_by_text(re.compile(r"queued \(place 1 in the queue\)"))).to_be_visible(timeout=20_000)
        goto(page, fleet_dashboard, "/descriptions?mode=batch")  # a fresh page opens on the running job
        expect(page.get_by_text(re.compile(r"^atelier-gpu-2 (paused|trying again): .*busy"))).to_be_visible(
            timeout=20_000)
        scroll_main_to_top(page)
        screenshot(page, "studio-batch-fleet-running-1440x900")
        gate.set()
        finished = wait_for_progress(page, r"finished: 120 / 120 rows", timeout_s=120)
        assert "120 done" in finished and "0 failed" in finished
        busy = fleet["atelier-gpu-2"].state.requests_to("/api/chat")
        assert len(busy) < 60  # paused with backoff: a trickle of probes, not its share of 120 rows
    finally:
        gate.set()
        context.close()
