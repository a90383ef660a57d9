"""Which images the project names, and the lab's stand-ins for those that cannot be pulled.

Pure parts: FROM-line and compose-default parsing, recipe hashes, the build decision.
``build_stand_ins`` builds every ``deploy/lab/images/<dir>`` (Dockerfile + IMAGE) whose image is
missing or was built from other content; the image carries the content hash as a label, so a
second run only compares labels.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path

from deploy.core.errors import ToolkitError
from deploy.core import project
from deploy.lab import paths

ROOT = project.ROOT
DOCKERFILES = ("Dockerfile",)
COMPOSE_FILES = ("docker-compose.yml", "compose.yaml", "compose.yml", "docker-compose.yaml")

_ARG = re.compile(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(\S*))?", re.I)
_FROM = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", re.I)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_IMAGE = re.compile(r"^\s*image:\s*(['\"]?)(.+?)\1\s*(?:#.*)?$")


def _expand(text: str, values: dict) -> str | None:
    """Expand ${VAR}, ${VAR:-default}, $VAR with ``values``; None if a variable has no value."""
    missing = []

    def sub(m):
        name = m.group(1) or m.group(4)
        value = values.get(name)
        if value in (None, "") and m.group(2):
            return m.group(3)
        if value is None:
            missing.append(name)
            return ""
        return value

    out = _VAR.sub(sub, text)
    return None if missing else out


def parse_from_lines(dockerfile_text: str) -> list[str]:
    """The external images a Dockerfile builds FROM, in order, without stage names or ``scratch``.

    ARG defaults declared before a FROM are expanded (``FROM python:${PY}-slim``).
    """
    args: dict[str, str] = {}
    stages: set[str] = set()
    images: list[str] = []
    for line in dockerfile_text.splitlines():
        if m := _ARG.match(line):
            if m.group(2) is not None:
                args[m.group(1)] = m.group(2).strip("'\"")
            continue
        if m := _FROM.match(line):
            ref = _expand(m.group(1), args)
            if m.group(2):
                stages.add(m.group(2).lower())
            if ref is None or ref == "scratch" or ref.lower() in stages - {(m.group(2) or "").lower()}:
                continue
            if ref not in images:
                images.append(ref)
    return images


def compose_image_defaults(compose_text: str) -> list[str]:
    """The images a compose file names with its defaults (``${POSTGRES_IMAGE:-postgres:17-trixie}``).

    Images with no default (``${APP_IMAGE}:${TAG}``) are built by the project, not provided here.
    """
    images = []
    for line in compose_text.splitlines():
        if m := _IMAGE.match(line):
            ref = _expand(m.group(2), {})
            if ref and ref not in images:
                images.append(ref)
    return images


def project_images(root: Path = ROOT) -> list[str]:
    """Every external image the project's Dockerfile(s) and compose file name (defaults only)."""
    names: list[str] = []
    for name in DOCKERFILES:
        if (root / name).is_file():
            names += parse_from_lines((root / name).read_text())
    for name in COMPOSE_FILES:
        if (root / name).is_file():
            names += compose_image_defaults((root / name).read_text())
            break
    return list(dict.fromkeys(names))


def dir_hash(directory: Path) -> str:
    """Content hash of a recipe directory: relative paths, executable bits and bytes, sorted."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        rel = path.relative_to(directory).as_posix()
        digest.update(f"{rel}\0{path.stat().st_mode & 0o111:o}\0".encode())
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class StandIn:
    name: str          # the image it provides, e.g. postgres:17-trixie
    directory: Path
    hash: str


def stand_ins(images_dir: Path = paths.IMAGES_DIR) -> list[StandIn]:
    """Every recipe under ``images_dir``; a directory without IMAGE or Dockerfile is an error."""
    found = []
    if not images_dir.is_dir():
        return found
    for directory in sorted(p for p in images_dir.iterdir() if p.is_dir() and p.name != "__pycache__"):
        image_file, dockerfile = directory / "IMAGE", directory / "Dockerfile"
        if not image_file.is_file() or not dockerfile.is_file():
            raise ToolkitError(f"stand-in recipe {directory} needs both IMAGE and Dockerfile; add the missing file")
        name = image_file.read_text().strip()
        if not name or len(name.split()) != 1:
            raise ToolkitError(f"{image_file}: must hold one image name on one line (e.g. postgres:17-trixie)")
        found.append(StandIn(name, directory, dir_hash(directory)))
    return found


def needs_build(labels: dict | None, want_hash: str) -> bool:
    """Pure: build unless the image exists and carries the recipe's hash label."""
    return labels is None or (labels or {}).get(paths.HASH_LABEL) != want_hash


def image_labels(client, name: str) -> dict | None:
    """Labels of a local image, {} for an image without labels, None if absent."""
    from docker.errors import ImageNotFound

    try:
        return client.images.get(name).labels or {}
    except ImageNotFound:
        return None


def build(client, stand_in: StandIn, lab_id: str) -> float:
    """Build one stand-in with the classic builder; return the seconds it took."""
    from docker.errors import BuildError

    started = time.monotonic()
    try:
        client.images.build(path=str(stand_in.directory), tag=stand_in.name, rm=True, forcerm=True,
                            labels={paths.LABEL: lab_id, paths.HASH_LABEL: stand_in.hash})
    except BuildError as exc:
        tail = "\n".join(str(c.get("stream", c.get("error", ""))).rstrip() for c in exc.build_log)[-1500:]
        raise ToolkitError(f"building stand-in {stand_in.name} from {stand_in.directory} failed: {exc.msg}\n{tail}")
    return time.monotonic() - started


def build_stand_ins(client, lab_id: str, say=print, only_missing: bool = False) -> list[str]:
    """Build every stand-in whose image is missing or stale; return the names built."""
    built = []
    for item in stand_ins():
        labels = image_labels(client, item.name)
        if only_missing and labels is not None:
            continue
        if not needs_build(labels, item.hash):
            continue
        say(f"building stand-in {item.name} from {item.directory.relative_to(ROOT)}")
        seconds = build(client, item, lab_id)
        say(f"built {item.name} in {seconds:.0f}s")
        built.append(item.name)
    return built
