"""The container engine the image tier uses: Debian's docker.io daemon, a base image made from Debian's
packages, and the build, with no image registry anywhere.

- ``start_engine``: use a running daemon, or start ``dockerd`` (root only) with its log in a file, no bridge
  and no iptables rules (the tier runs containers on the host network, builds with none); stopped by PID when
  the tier ends. Where it cannot start, ``EngineUnavailable`` says why and the tier skips with that reason.
- ``ensure_base_image``: ``debootstrap --variant=minbase bookworm`` with Python 3.11 (venv) and ``useradd``,
  then ``docker import``; cached as an image tag, and as a tarball under ``~/.cache/ollama-dashboard``.
- ``build_image``: ``docker build --network none`` from the wheelhouse (``make wheels``): the offline build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BASE_RECIPE = "bookworm-python3.11-v1"  # change it when the recipe below changes: the cache is keyed on it
BASE_TAG = f"ollama-dashboard-base:{BASE_RECIPE}"
BASE_PACKAGES = ("python3", "python3-venv", "passwd")
IMPORT_CHANGES = ('ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'CMD ["/bin/bash"]')
ENGINE_START_S = 60.0


class EngineUnavailable(Exception):
    """No container engine can run here; the message is the reason the tier skips."""


def cache_dir() -> Path:
    """Outside the repository, kept between runs: ``$DASHBOARD_TEST_CACHE`` or ``~/.cache/ollama-dashboard``."""
    configured = os.environ.get("DASHBOARD_TEST_CACHE", "").strip()
    return Path(configured) if configured else Path.home() / ".cache" / "ollama-dashboard"


def _tail(path: Path, lines: int = 6) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class Engine:
    docker: str
    dockerd: subprocess.Popen | None = None  # set when this run started the daemon (and so stops it)
    log_path: Path | None = None

    def run(self, *args: str, timeout: float = 120, check: bool = True, input_bytes: bytes | None = None,
            stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess:
        result = subprocess.run([self.docker, *args], input=input_bytes, stdout=stdout, stderr=subprocess.PIPE,
                                timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args[:3])} failed ({result.returncode}): "
                               f"{result.stderr.decode(errors='replace')[-2000:]}")
        return result

    def text(self, *args: str, timeout: float = 120) -> str:
        return self.run(*args, timeout=timeout).stdout.decode(errors="replace").strip()

    def image_exists(self, tag: str) -> bool:
        return self.run("image", "inspect", tag, check=False).returncode == 0

    def stop(self) -> None:
        """Stop the daemon if this run started it (by its PID; it stops its own containerd)."""
        if self.dockerd is None or self.dockerd.poll() is not None:
            return
        self.dockerd.terminate()
        try:
            self.dockerd.wait(30)
        except subprocess.TimeoutExpired:
            self.dockerd.kill()
            self.dockerd.wait(10)


def _answers(docker: str) -> bool:
    try:
        return subprocess.run([docker, "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def start_engine(log_dir: Path, dockerd_command: list[str] | None = None, wait_s: float = ENGINE_START_S,
                 docker_info: Callable[[], bool] | None = None) -> Engine:
    """A daemon that answers ``docker info`` (``docker_info``): the running one, or one started here (root only)."""
    docker = shutil.which("docker")
    if docker is None:
        raise EngineUnavailable("no docker client: `make system-deps` installs Debian's docker.io")
    answers = docker_info or (lambda: _answers(docker))
    if dockerd_command is None and answers():
        return Engine(docker)
    dockerd_command = dockerd_command or [shutil.which("dockerd") or "dockerd", "--bridge=none", "--iptables=false",
                                          "--ip-masq=false"]
    if shutil.which(dockerd_command[0]) is None:
        raise EngineUnavailable("no dockerd: `make system-deps` installs Debian's docker.io")
    if os.geteuid() != 0:
        raise EngineUnavailable("dockerd is not running and only root can start it")
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "dockerd.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(dockerd_command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    engine = Engine(docker, process, log_path)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EngineUnavailable(f"dockerd exited with status {process.returncode}; its log ends:\n"
                                    f"{_tail(log_path)}")
        if answers():
            return engine
        time.sleep(0.5)
    engine.stop()
    raise EngineUnavailable(f"dockerd did not answer within {wait_s:.0f} s; its log ends:\n{_tail(log_path)}")


def _debootstrap_tarball(target: Path, log_dir: Path) -> None:
    """A minimal Debian 12 with Python 3.11, as a tarball (written whole, then renamed: never half a cache)."""
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).exists():
        raise EngineUnavailable("no debootstrap: `make system-deps` installs it")
    target.parent.mkdir(parents=True, exist_ok=True)
    command = [debootstrap, "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", "bookworm"]
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        rootfs = Path(scratch) / "rootfs"
        mirror = os.environ.get("DEBIAN_MIRROR", "").strip()  # debootstrap's own default otherwise
        log_path = log_dir / "debootstrap.log"
        with log_path.open("w") as log:
            result = subprocess.run([*command, str(rootfs), *([mirror] if mirror else [])], stdout=log,
                                    stderr=subprocess.STDOUT, timeout=1200, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"debootstrap failed ({result.returncode}); its log ends:\n{_tail(log_path)}")
        subprocess.run(["chroot", str(rootfs), "apt-get", "clean"], check=True, capture_output=True, timeout=120)
        shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
        partial = target.with_suffix(".partial")
        subprocess.run(["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(partial), "."],
                       check=True, capture_output=True, timeout=600)  # owners, modes, device files as they are
        partial.rename(target)


def ensure_base_image(engine: Engine, log_dir: Path) -> str:
    """The base image tag: already in the daemon, else imported from the cached tarball, else debootstrapped."""
    if engine.image_exists(BASE_TAG):
        return BASE_TAG
    tarball = cache_dir() / f"debian-{BASE_RECIPE}.tar"
    if not tarball.is_file():
        _debootstrap_tarball(tarball, log_dir)
    changes = [arg for change in IMPORT_CHANGES for arg in ("--change", change)]
    engine.run("import", *changes, str(tarball), BASE_TAG, timeout=600)
    return BASE_TAG


def ensure_wheelhouse() -> Path:
    """``make wheels`` (the one definition of how the wheelhouse is made); it skips what is already there."""
    result = subprocess.run(["make", "-s", "wheels"], cwd=ROOT, timeout=900, capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"make wheels failed ({result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}")
    return ROOT / "wheelhouse"


@dataclass
class Build:
    tag: str
    seconds: float
    cached_steps: int
    log: str


def build_image(engine: Engine, base: str, tag: str, *, no_cache: bool = False) -> Build:
    """``docker build --network none`` of the repository: only the wheelhouse and the base image, offline."""
    started = time.monotonic()
    result = engine.run("build", "--network", "none", "--build-arg", f"BASE_IMAGE={base}", "--tag", tag,
                        *(["--no-cache"] if no_cache else []), str(ROOT), timeout=1800, check=False)
    seconds = time.monotonic() - started
    log = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    if result.returncode != 0:
        raise RuntimeError(f"docker build failed ({result.returncode}):\n{log[-4000:]}")
    return Build(tag, seconds, log.count("Using cache"), log)
