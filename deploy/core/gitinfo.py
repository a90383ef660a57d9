"""Immutable image tags from git: the short SHA, with ``-dirty`` when the tree has changes."""

from __future__ import annotations

import subprocess
from pathlib import Path
from deploy.core import project

ROOT = project.ROOT


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def tag_for(sha: str, dirty: bool) -> str:
    """Pure: the tag for a commit and a dirty flag."""
    return f"{sha}-dirty" if dirty else sha


def current_tag(cwd: Path = ROOT) -> str:
    """The immutable tag of the working tree (``abc1234`` or ``abc1234-dirty``)."""
    try:
        sha = _git("rev-parse", "--short=7", "HEAD", cwd=cwd)
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no", cwd=cwd))
    except (subprocess.CalledProcessError, FileNotFoundError):
        from deploy.core.errors import ToolkitError

        raise ToolkitError(f"cannot read the git commit of {cwd}; images are tagged by git SHA: commit first (git init && git commit)") from None
    return tag_for(sha, dirty)
