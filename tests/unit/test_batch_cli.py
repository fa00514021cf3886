"""``python -m services.studio.batch`` as a scheduled job would run it: a subprocess against the stand-in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.standin import StandinServer

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
FR_REPLY = "Une robe élégante et fluide, parfaite pour vos soirées."


def run_cli(standin: StandinServer, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OLLAMA_HOST": standin.url, "DASHBOARD_DATA_DIR": str(tmp_path / "data"),
           "DASHBOARD_STALL_TIMEOUT": "2"}
    env.pop("DASHBOARD_BACKENDS_FILE", None)
    return subprocess.run([sys.executable, "-m", "services.studio", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_help(standin: StandinServer, tmp_path: Path) -> None:
    done = run_cli(standin, tmp_path, "--help")
    assert done.returncode == 0
    for option in ("--input", "--output", "--task", "--model", "--backend", "--concurrency", "--language"):
        assert option in done.stdout


def test_a_catalogue_runs_end_to_end(standin: StandinServer, tmp_path: Path) -> None:
    standin.state.configure(replies={"Product data": FR_REPLY})
    out = tmp_path / "out.xlsx"
    done = run_cli(standin, tmp_path, "--input", str(FIXTURES / "products.csv"), "--output", str(out),
                   "--task", "description", "--model", "llama3.2:1b", "--concurrency", "3", "--language", "fr")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "summary: 6 done, 0 failed, 0 not run, of 6 rows" in done.stdout
    frame = pd.read_excel(out, dtype=str, keep_default_na=False)
    assert list(frame.columns)[:8] == ["sku", "product_type", "name", "colour", "material", "occasion", "price",
                                       "ean"]
    assert (frame["ai_status"] == "done").all() and (frame["ai_template"] == "description@v2").all()
    assert frame.loc[4, "name"].startswith("'=HYPERLINK(")
    assert not list(tmp_path.glob(".out.xlsx*"))  # no temporary file left behind


def test_exit_status_is_1_when_a_row_fails(standin: StandinServer, tmp_path: Path) -> None:
    standin.state.configure(format_mode="unknown_enum")
    out = tmp_path / "out.csv"
    done = run_cli(standin, tmp_path, "--input", str(FIXTURES / "products.csv"), "--output", str(out),
                   "--task", "classification", "--model", "llama3.2:1b", "--map", "name=name", "--quiet")
    assert done.returncode == 1
    assert "summary: 0 done, 6 failed" in done.stdout
    frame = pd.read_csv(out, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    assert (frame["ai_status"] == "failed").all() and (frame["ai_result"] == "").all()
    assert frame["ai_error"].str.contains("not a category").all()


@pytest.mark.parametrize(("args", "message"), [
    (["--input", "missing_column.csv", "--task", "description"], "required field “Product type”"),
    (["--input", "empty.csv", "--task", "description"], "The file is empty."),
    (["--input", "products.csv", "--task", "description", "--map", "colour"], "expected FIELD=COLUMN"),
])
def test_bad_input_exits_2_with_a_message_and_writes_nothing(standin: StandinServer, tmp_path: Path,
                                                             args: list[str], message: str) -> None:
    out = tmp_path / "out.csv"
    args = [str(FIXTURES / a) if a.endswith(".csv") and a != "out.csv" else a for a in args]
    done = run_cli(standin, tmp_path, *args, "--output", str(out), "--model", "llama3.2:1b")
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()
    assert standin.state.requests_to("/api/chat") == []


def run_fleet_cli(servers: dict[str, StandinServer], tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    backends = tmp_path / "backends.toml"
    backends.write_text("".join(f'[[backends]]\nname = "{name}"\nurl = "{server.url}"\nslots = 3\n\n'
                                for name, server in servers.items()))
    env = {**os.environ, "DASHBOARD_BACKENDS_FILE": str(backends), "DASHBOARD_DATA_DIR": str(tmp_path / "data"),
           "DASHBOARD_STALL_TIMEOUT": "2"}
    return subprocess.run([sys.executable, "-m", "services.studio", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_backends_all_spreads_the_file_and_says_which_backend_answered(tmp_path: Path) -> None:
    with StandinServer() as one, StandinServer() as two, StandinServer() as empty:
        for server in (one, two):
            server.state.configure(replies={"Product data": FR_REPLY}, request_time_s=0.05)
        empty.state.models.pop("llama3.2:1b")
        out = tmp_path / "out.csv"
        done = run_fleet_cli({"gpu-1": one, "gpu-2": two, "cpu-1": empty}, tmp_path, "--input",
                             str(FIXTURES / "products.csv"), "--output", str(out), "--task", "description", "--model",
                             "llama3.2:1b", "--backends", "all")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "on gpu-1 ×3, gpu-2 ×3" in done.stdout and "skipping cpu-1" in done.stderr
        frame = pd.read_csv(out, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        assert (frame["ai_status"] == "done").all() and set(frame["ai_backend"]) <= {"gpu-1", "gpu-2"}
        assert empty.state.requests_to("/api/chat") == []


def test_a_digest_mismatch_between_backends_stops_before_any_request_unless_allowed(tmp_path: Path) -> None:
    with StandinServer() as one, StandinServer() as two:
        for server in (one, two):
            server.state.configure(replies={"Product data": FR_REPLY})
        two.state.models["llama3.2:1b"]["digest"] = "e" * 64
        out = tmp_path / "out.csv"
        args = ("--input", str(FIXTURES / "products.csv"), "--output", str(out), "--task", "description", "--model",
                "llama3.2:1b", "--backend", "gpu-1", "--backend", "gpu-2")
        refused = run_fleet_cli({"gpu-1": one, "gpu-2": two}, tmp_path, *args)
        assert refused.returncode == 2 and "not the same model everywhere" in refused.stderr
        assert "eeeeeeeeeeee on gpu-2" in refused.stderr and "--allow-digest-mismatch" in refused.stderr
        assert one.state.requests_to("/api/chat") == [] and not out.exists()
        allowed = run_fleet_cli({"gpu-1": one, "gpu-2": two}, tmp_path, *args, "--allow-digest-mismatch")
        assert allowed.returncode == 0, allowed.stdout + allowed.stderr
