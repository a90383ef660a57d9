"""The plan of `inv init` (write what is missing, skip what exists) and the one function that carries it out."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


# An existing file without its marker was not made for the toolkit (e.g. `wagtail start` writes its own Dockerfile):
# init still keeps it, and says so, since the toolkit's build and entrypoint rely on theirs.
MARKERS = {"Dockerfile": "djdeploy_django", "docker-entrypoint.sh": "djdeploy_django.preflight",
           "tasks.py": "deploy.tasks"}


@dataclass(frozen=True)
class Plan:
    root: Path
    write: dict      # relative path -> (content, mode), only files that do not exist
    skip: tuple      # relative paths that exist (never overwritten, whatever their content)
    foreign: tuple = ()  # of those, the ones the toolkit cannot work with (MARKERS)


def _foreign(path: Path, marker: str | None) -> bool:
    try:
        return marker is not None and marker not in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return True


def plan(root: Path, files: dict) -> Plan:
    """Pure but for existence checks: which of ``files`` are missing under ``root``."""
    exists = tuple(rel for rel in files if os.path.lexists(root / rel))
    foreign = tuple(rel for rel in exists if _foreign(root / rel, MARKERS.get(rel)))
    return Plan(root, {rel: v for rel, v in files.items() if rel not in exists}, exists, foreign)


def apply(p: Plan) -> list[str]:
    """Create the missing files (exclusive create: a file that appeared meanwhile is left alone)."""
    written = []
    for rel, (content, mode) in p.write.items():
        path = p.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
        os.chmod(path, mode)
        written.append(rel)
    return written


def report(p: Plan, written: list[str], in_git: bool) -> list[str]:
    """The lines init prints: what it wrote, what it skipped, and the next two commands."""
    lines = [f"wrote    {rel}" for rel in written]
    lines += [f"skipped  {rel} (exists; never overwritten)" for rel in p.skip if rel not in p.foreign]
    lines += [f"skipped  {rel} (exists; never overwritten) but it is not the toolkit's: move it away and rerun "
              "init to get the toolkit's" for rel in p.foreign]
    if not written:
        lines.append(f"nothing to write: {p.root} already has every file")
    if not in_git:
        lines.append("note: images are tagged by git commit; first: git init && git add -A && git commit -m init")
    lines += ["next:", f"  cd {p.root} && inv build && inv smoke    # build the image and prove it serves",
              "  inv up                                   # run it with Postgres on http://127.0.0.1:8000/"]
    return lines
