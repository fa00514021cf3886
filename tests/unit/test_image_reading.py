"""The image tier's own parts, without an engine: reading a Dockerfile as docker build does, and skipping with
a reason where no daemon can start. (The image tier checks the reading against a real build.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.image.dockerfile import context_files, image_files, parse
from tests.image.engine import EngineUnavailable, start_engine


def make_context(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_dockerignore_is_root_relative_with_exceptions(tmp_path: Path) -> None:
    context = make_context(tmp_path, {
        ".dockerignore": "data\n**/__pycache__\ndocs/*\n!docs/keep.md\n.dockerignore\nDockerfile\n",
        "Dockerfile": "FROM x\n", "app.py": "", "data/db": "", "pkg/data/ok.txt": "", "pkg/__pycache__/m.pyc": "",
        "docs/keep.md": "", "docs/drop.md": "",
    })
    # Unlike .gitignore, `data` is ./data only; the build files the ignore file lists are dropped too.
    assert context_files(context) == {"app.py", "pkg/data/ok.txt", "docs/keep.md"}


def test_copy_semantics_stages_and_removal(tmp_path: Path) -> None:
    context = make_context(tmp_path, {
        "Dockerfile": (
            "ARG BASE=debian\n"
            "FROM ${BASE} AS deps\n"
            "COPY req.txt wheels* /build/\n"
            "FROM $BASE AS source\n"
            "WORKDIR /src\n"
            "COPY . ./\n"
            "RUN rm -rf wheels \\\n"
            "    && echo done\n"
            "FROM debian\n"
            "COPY --from=source /src /app\n"
            "COPY --chown=1:1 conf/one.toml /etc/one.toml\n"
            "COPY [\"conf\", \"/etc/conf/\"]\n"
            "USER nobody\n"
        ),
        ".dockerignore": "Dockerfile\n.dockerignore\n",
        "req.txt": "", "main.py": "", "conf/one.toml": "", "conf/two.toml": "", "wheels/a.whl": "",
    })
    stages = parse((context / "Dockerfile").read_text())
    assert [(s.base, s.name) for s in stages] == [("debian", "deps"), ("debian", "source"), ("debian", None)]
    image = image_files(context)
    assert set(image.files) == {
        "/app/main.py", "/app/req.txt", "/app/conf/one.toml", "/app/conf/two.toml",  # wheels removed in `source`
        "/etc/one.toml",  # a file to a file name
        "/etc/conf/one.toml", "/etc/conf/two.toml",  # a folder's contents into the destination
    }
    assert image.user == "nobody" and image.copies[1].chown == "1:1"


def test_a_missing_copy_source_is_an_error_but_an_unmatched_wildcard_is_not(tmp_path: Path) -> None:
    make_context(tmp_path, {"Dockerfile": "FROM x\nCOPY a.txt maybe* /d/\n", "a.txt": ""})
    assert set(image_files(tmp_path).files) == {"/d/a.txt"}
    (tmp_path / "Dockerfile").write_text("FROM x\nCOPY gone /d/\n")
    with pytest.raises(FileNotFoundError, match="not in the build context"):
        image_files(tmp_path)


def test_a_daemon_that_cannot_start_is_a_reason_to_skip(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        with pytest.raises(EngineUnavailable, match="only root"):
            start_engine(tmp_path, dockerd_command=["sh", "-c", "exit 1"])
        return
    script = tmp_path / "dockerd"
    script.write_text("#!/bin/sh\necho 'failed to start daemon: Devices cgroup is not mounted' >&2\nexit 1\n")
    script.chmod(0o755)
    with pytest.raises(EngineUnavailable) as refused:
        start_engine(tmp_path, dockerd_command=[str(script)], docker_info=lambda: False)
    assert "dockerd exited with status 1" in str(refused.value)
    assert "Devices cgroup is not mounted" in str(refused.value)  # the daemon's own words, from its log


def test_a_daemon_that_never_answers_is_stopped_and_skipped(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("starting a daemon needs root")
    with pytest.raises(EngineUnavailable, match="did not answer within 1 s"):
        start_engine(tmp_path, dockerd_command=["sleep", "300"], wait_s=1, docker_info=lambda: False)
