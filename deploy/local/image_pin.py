"""Which app image `inv up` runs, and when it builds one first.

The image for a clean tree is ``APP_IMAGE:<sha>``: git tags are immutable, so if it exists it is current.
A dirty tree's tag (``<sha>-dirty``) names many different trees, so the tag alone cannot say whether
the image is stale. Rebuilding on every `inv up` would cost a cached build (seconds) each time; instead we
hash the build context (exactly the files the build sends, .dockerignore applied, via deploy.image.builder) and
remember which image id was built from which hash (a small JSON file in the user's cache directory).
Same hash and the tag still points to the same image: reuse it; anything else: build.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from deploy.local import compose
from deploy.local.compose import StackSettings
from deploy.core.errors import ToolkitError
from deploy.core.runner import Runner

STATE_NAME = "stack-images.json"
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def state_file(environ=None) -> Path:
    environ = os.environ if environ is None else environ
    cache = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "djdeploy" / STATE_NAME


def context_hash(root: Path, files: list[str]) -> str:
    """Content hash of the build context: relative path, executable bit and bytes of every file, in order."""
    digest = hashlib.sha256()
    for rel in sorted(files):
        path = root / rel
        digest.update(f"{rel}\0{path.stat().st_mode & 0o111:o}\0".encode())
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def build_reason(ref: str, image_id: str | None, dirty: bool, context: str | None, recorded: dict | None) -> str | None:
    """Pure: why ``ref`` must be built, or None to run it as it is."""
    if image_id is None:
        return f"no image {ref} yet"
    if not dirty:
        return None
    if not recorded or recorded.get("context") != context:
        return f"the build context changed since {ref} was built (the tree has uncommitted changes)"
    if recorded.get("id") != image_id:
        return f"{ref} was rebuilt from another tree since"
    return None


def read_state(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def write_state(path: Path, state: dict, keep: int = 50) -> None:
    """Write atomically, keeping the ``keep`` most recent entries (insertion order)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    recent = dict(list(state.items())[-keep:])
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(recent, indent=1))
    tmp.replace(path)


def image_id(runner: Runner, ref: str) -> str | None:
    from deploy.local.lifecycle import quiet

    out = quiet(runner).run(compose.image_id_argv(ref), hide=True, check=False, timeout=30)
    return (out.stdout.strip() or None) if out.ok else None


def ensure(runner: Runner, s: StackSettings, tag: str, build=None, files=None, state_path: Path | None = None,
           say=print) -> str:
    """Return the image ref to run, building it first when it is missing or stale."""
    ref = f"{s.app_image}:{tag}"
    dirty = tag.endswith("-dirty")
    state_path = state_path or state_file()
    state = read_state(state_path) if dirty else {}
    context = None
    if dirty:
        if files is None:
            from deploy.image.builder import context_files

            files = context_files(s.root)
        context = context_hash(s.root, files)
    key = f"{s.root}|{ref}"
    reason = build_reason(ref, image_id(runner, ref), dirty, context, state.get(key))
    if reason is None:
        say(f"image: {ref} (up to date)")
        return ref
    say(f"image: building {ref}: {reason}")
    if build is None:
        from deploy.image.builder import build
    built = build(tag=tag)
    if dirty:
        state.pop(key, None)  # re-insert last: the newest entry survives pruning
        state[key] = {"context": context, "id": built.id}
        write_state(state_path, state)
    return built.ref


def pinned(runner: Runner, s: StackSettings, tag: str) -> str:
    """`inv up --tag TAG`: run that existing image as it is (never built here)."""
    if not _TAG.match(tag):
        raise ToolkitError(f"--tag {tag!r} is not a valid image tag; give e.g. abc1234 or latest")
    ref = f"{s.app_image}:{tag}"
    if image_id(runner, ref) is None:
        raise ToolkitError(f"image {ref} is not on this engine; build it with `inv build`, or drop --tag to build "
                           "the current tree")
    return ref
