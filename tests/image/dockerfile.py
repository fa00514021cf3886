"""What the Dockerfile puts in the image, without an engine: its COPY lines over the build context.

The context is what ``docker build`` sends: the folder less what ``.dockerignore`` excludes, matched by the
Docker SDK's own implementation (``docker.utils.build``, the same rules as the CLI: root-relative patterns,
``**``, ``!`` exceptions, last match wins). On top of it this reads the Dockerfile's stages and replays, per
stage, ``COPY`` (and local ``ADD``) with Docker's rules (a folder's contents go into the destination, relative
destinations follow ``WORKDIR``, ``--from=<stage>`` takes another stage's files) and ``RUN rm -rf``. Other
``RUN`` lines make files this cannot know (the virtualenv): the tests stand them in with the project's own
virtualenv, built from the same pinned requirements. The image tier checks this reading against a real build.
"""

from __future__ import annotations

import fnmatch
import json
import os
import posixpath
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from docker.utils.build import PatternMatcher, exclude_paths

# Files the daemon reads itself and drops from the context when .dockerignore lists them.
BUILD_FILES = ("Dockerfile", ".dockerignore")


@dataclass
class Copy:
    sources: list[str]
    dest: str
    from_stage: str | None = None
    chown: str | None = None
    workdir: str = "/"


@dataclass
class Stage:
    base: str
    name: str | None
    steps: list[Copy | list[str]] = field(default_factory=list)  # a Copy, or the paths a `RUN rm -rf` removes
    user: str | None = None
    workdir: str = "/"


def logical_lines(text: str) -> list[str]:
    """Instructions with their continuation lines joined and comments dropped.

    >>> logical_lines("FROM x\\n# note\\nRUN a \\\\\\n  && b\\n\\nCOPY . /app\\n")
    ['FROM x', 'RUN a  && b', 'COPY . /app']
    """
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or (stripped.startswith("#") and not pending):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append((pending + stripped).strip())
        pending = ""
    if pending.strip():
        lines.append(pending.strip())
    return lines


def _words(rest: str) -> list[str]:
    rest = rest.strip()
    if rest.startswith("["):
        return [str(word) for word in json.loads(rest)]
    return shlex.split(rest)


def _substitute(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), text)


def removed_paths(command: str) -> list[str]:
    """The paths ``rm -rf`` (or ``-fr``, ``-r -f``) removes in a RUN command chained with ``&&`` or ``;``.

    >>> removed_paths("rm -rf /app/wheelhouse && python3 -m compileall -q /app")
    ['/app/wheelhouse']
    >>> removed_paths("apt-get clean; rm -r -f /var/lib/apt/lists/* /tmp/x")
    ['/var/lib/apt/lists/*', '/tmp/x']
    """
    removed: list[str] = []
    for part in re.split(r"&&|;|\|\|", command):
        words = shlex.split(part)
        if not words or words[0] != "rm":
            continue
        flags = "".join(w[1:] for w in words[1:] if w.startswith("-"))
        if "r" in flags.lower():
            removed += [w for w in words[1:] if not w.startswith("-")]
    return removed


def parse(text: str) -> list[Stage]:
    """The Dockerfile's stages, with what each copies and removes, its USER and WORKDIR."""
    stages: list[Stage] = []
    args: dict[str, str] = {}
    for line in logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG":
            name, _, default = rest.strip().partition("=")
            args.setdefault(name.strip(), default.strip())
        elif keyword == "FROM":
            words = _substitute(rest, args).split()
            words = [w for w in words if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            base = words[0]
            parent = next((s for s in stages if s.name and s.name == base), None)
            stage = Stage(base=base, name=name)
            if parent is not None:  # FROM an earlier stage: its WORKDIR and USER carry on (its files too, below)
                stage.workdir, stage.user = parent.workdir, parent.user
            stages.append(stage)
        elif not stages:
            continue
        elif keyword == "WORKDIR":
            stages[-1].workdir = posixpath.join(stages[-1].workdir, rest.strip())
        elif keyword == "USER":
            stages[-1].user = rest.strip()
        elif keyword in ("COPY", "ADD"):
            words = _words(rest)
            options = {w[2:].split("=", 1)[0]: w.split("=", 1)[1] if "=" in w else "" for w in words
                       if w.startswith("--")}
            paths = [w for w in words if not w.startswith("--")]
            if keyword == "ADD" and any("://" in p for p in paths[:-1]):
                raise ValueError(f"ADD from a URL is not reproducible offline: {line}")
            stages[-1].steps.append(Copy(sources=paths[:-1], dest=paths[-1], from_stage=options.get("from"),
                                         chown=options.get("chown"), workdir=stages[-1].workdir))
        elif keyword == "RUN":
            removed = removed_paths(rest)
            if removed:
                stages[-1].steps.append([posixpath.join(stages[-1].workdir, p) for p in removed])
    return stages


def _ignore_patterns(root: Path) -> list[str]:
    ignore = root / ".dockerignore"
    if not ignore.is_file():
        return []
    return [line.strip() for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")]


def context_files(root: Path) -> set[str]:
    """The build context ``docker build`` sends from ``root``: relative POSIX paths of files (and links)."""
    patterns = _ignore_patterns(root)
    kept = {p.replace(os.sep, "/") for p in exclude_paths(str(root), list(patterns))
            if not (root / p).is_dir() or (root / p).is_symlink()}
    matcher = PatternMatcher(list(patterns))
    matcher.patterns = matcher.patterns[:-1]  # without the SDK's own "!.dockerignore"
    return {p for p in kept if not (p in BUILD_FILES and matcher.matches(p))}


class Filesystem:
    """A stage's files: image path -> where the content comes from (a context file)."""

    def __init__(self) -> None:
        self.files: dict[str, Path] = {}

    def copy_in(self, step: Copy, context: Path, context_set: set[str], stages: dict[str, Filesystem]) -> None:
        dest = step.dest if step.dest.startswith("/") else posixpath.join(step.workdir, step.dest)
        into_folder = step.dest.endswith("/") or len(step.sources) > 1
        for source in step.sources:
            if step.from_stage is not None:
                pairs = stages[step.from_stage].under(posixpath.normpath("/" + source.lstrip("/")))
            else:
                pairs = _context_matches(source, context, context_set)
            for relative, origin, is_folder in pairs:
                if is_folder:
                    target = posixpath.join(dest, relative) if relative else dest
                elif into_folder or dest.endswith("/"):
                    target = posixpath.join(dest, relative or posixpath.basename(str(origin)))
                else:
                    target = dest if not relative else posixpath.join(dest, relative)
                self.files[posixpath.normpath(target)] = origin

    def remove(self, paths: list[str]) -> None:
        for pattern in paths:
            pattern = posixpath.normpath(pattern)
            for path in list(self.files):
                if fnmatch.fnmatchcase(path, pattern) or path.startswith(pattern.rstrip("/") + "/"):
                    del self.files[path]

    def under(self, folder: str) -> list[tuple[str, Path, bool]]:
        """(path relative to the folder, origin, came from a folder) for a --from copy."""
        if folder in self.files:
            return [("", self.files[folder], False)]
        prefix = folder.rstrip("/") + "/"
        return [(path[len(prefix):], origin, True) for path, origin in self.files.items() if path.startswith(prefix)]


def _context_matches(source: str, context: Path, context_set: set[str]) -> list[tuple[str, Path, bool]]:
    """Context files a COPY source names: a file, a folder (its contents) or a wildcard (none is fine)."""
    source = posixpath.normpath(source.lstrip("/")) if source not in (".", "./") else "."
    found: list[tuple[str, Path, bool]] = []
    if any(ch in source for ch in "*?["):
        tops = {p.split("/")[0] for p in context_set} | {"/".join(p.split("/")[:i]) for p in context_set
                                                         for i in range(1, p.count("/") + 1)}
        matched = sorted(t for t in tops if fnmatch.fnmatchcase(t, source) and t.count("/") == source.count("/"))
        for match in matched:
            found += _context_matches(match, context, context_set)
        return found
    if source == ".":
        return [(path, context / path, True) for path in sorted(context_set)]
    if source in context_set:
        return [("", context / source, False)]
    prefix = source + "/"
    inside = [(path[len(prefix):], context / path, True) for path in sorted(context_set) if path.startswith(prefix)]
    if not inside and not (context / source).is_dir():
        raise FileNotFoundError(f"COPY {source}: not in the build context (missing, or excluded by .dockerignore)")
    return inside


@dataclass
class ImageFiles:
    """The final stage: its files by image path, and who runs it."""

    files: dict[str, Path]
    user: str | None
    workdir: str
    copies: list[Copy]

    def under(self, folder: str) -> dict[str, Path]:
        prefix = folder.rstrip("/") + "/"
        return {path[len(prefix):]: origin for path, origin in self.files.items() if path.startswith(prefix)}


def image_files(context: Path, dockerfile: str = "Dockerfile") -> ImageFiles:
    """Replay the Dockerfile's COPY lines over the context: the files each stage, and the image, end up with."""
    stages = parse((context / dockerfile).read_text())
    context_set = context_files(context)
    built: dict[str, Filesystem] = {}
    for index, stage in enumerate(stages):
        fs = Filesystem()
        parent = built.get(stage.base)
        if parent is not None:
            fs.files = dict(parent.files)
        for step in stage.steps:
            if isinstance(step, Copy):
                fs.copy_in(step, context, context_set, built)
            else:
                fs.remove(step)
        built[stage.name or str(index)] = fs
    final = stages[-1]
    return ImageFiles(files=built[final.name or str(len(stages) - 1)].files, user=final.user,
                      workdir=final.workdir, copies=[s for s in final.steps if isinstance(s, Copy)])


def assemble(context: Path, dest: Path, folder: str = "/app") -> Path:
    """Copy the files the image holds under ``folder`` into ``dest``; return ``dest``."""
    for relative, origin in image_files(context).under(folder).items():
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(origin, target, follow_symlinks=False)
    return dest
