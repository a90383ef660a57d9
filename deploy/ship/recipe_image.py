"""Images the toolkit builds from a recipe directory (the edge image, the backup image): tagged by a hash of the
recipe's files and the base image's name, built FROM that base through the Docker SDK, pushed once.

A tag already in the registry is not rebuilt (``ensure``), so such an image changes only when its recipe or its
base name does: a deploy of a new app version never touches the services that run it. Pin the base by digest
(``name:tag@sha256:...``) to get a rebuild whenever the base image itself changes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from pathlib import Path

from deploy.core.errors import ToolkitError
from deploy.ship import registry


def recipe_hash(base: str, directory: Path, files: tuple) -> str:
    """12 hex digits of sha256 over the base image's name and each recipe file (name and bytes)."""
    h = hashlib.sha256(base.encode() + b"\0")
    for name in files:
        h.update(name.encode() + b"\0" + (Path(directory) / name).read_bytes() + b"\0")
    return h.hexdigest()[:12]


def build(directory: Path, local: str, buildargs: dict, labels: dict, what: str, hint: str, out=sys.stdout) -> str:
    """Build ``directory`` as ``local`` (the base comes in ``buildargs``); a failure is one ToolkitError with the
    build log's tail. ``what`` names the image ("the edge image FROM haproxy:3.0-trixie"), ``hint`` the likely fix."""
    from docker.errors import APIError, BuildError

    from deploy.core.engine import client

    cli = client()
    try:
        cli.images.build(path=str(directory), tag=local, buildargs=buildargs, rm=True, forcerm=True, labels=labels)
    except BuildError as exc:
        tail = "".join(str(c.get("stream", c.get("error", ""))) for c in exc.build_log)[-1500:]
        raise ToolkitError(f"build of {what} failed: {exc.msg}\n{tail}") from None
    except APIError as exc:
        raise ToolkitError(f"build of {what} failed: {exc.explanation or exc}; {hint}") from None
    finally:
        cli.close()
    out.write(f"  built {local}\n")
    return local


def ensure(cfg, repository: str, tag: str, make, out=sys.stdout) -> str:
    """``<registry>/<repository>:<tag>``; ``make(tag) -> local ref`` builds it when the registry lacks the tag,
    and it is pushed with the deploy's registry credentials."""
    repo = dataclasses.replace(cfg, app_image=repository)   # the registry helpers work on cfg.app_image
    if registry.manifest_digest(repo, tag) is None:
        registry.push(repo, make(tag), tag, out=out)
    return f"{cfg.registry}/{repository}:{tag}"
