"""The edge image (deploy/ship/edge: HAProxy + Python 3 + certbot's acme): tagged by its recipe, built and pushed once.

The tag is a hash of the recipe's files and PROXY_IMAGE, so the proxy and certs services change only when the
recipe does (a deploy of a new app version never touches them). A tag already in the registry is not rebuilt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from pathlib import Path

from deploy.core.errors import ToolkitError
from deploy.ship import registry

EDGE_DIR = Path(__file__).resolve().parent / "edge"
FILES = ("Dockerfile", "edge-agent", "edge-entrypoint.sh", "edge_common.py", "edge_certs.py", "edge_sync.py")


def recipe_tag(proxy_image: str, edge_dir: Path = EDGE_DIR) -> str:
    h = hashlib.sha256(proxy_image.encode() + b"\0")
    for name in FILES:
        h.update(name.encode() + b"\0" + (edge_dir / name).read_bytes() + b"\0")
    return "e" + h.hexdigest()[:12]


def as_repo(cfg):
    """``cfg`` with the edge repository in place of the app's (for the registry helpers)."""
    return dataclasses.replace(cfg, app_image=cfg.edge_image)


def ref(cfg) -> str:
    return f"{cfg.registry}/{cfg.edge_image}:{recipe_tag(cfg.proxy_image)}"


def build(cfg, tag: str, out=sys.stdout) -> str:
    """Build the edge image FROM PROXY_IMAGE through the SDK; return the local ref."""
    from docker.errors import APIError, BuildError

    from deploy.core.engine import client

    local = f"{cfg.edge_image}:{tag}"
    cli = client()
    try:
        cli.images.build(path=str(EDGE_DIR), tag=local, buildargs={"PROXY_IMAGE": cfg.proxy_image}, rm=True,
                         forcerm=True, labels={"djdeploy.edge": tag})
    except BuildError as exc:
        tail = "".join(str(c.get("stream", c.get("error", ""))) for c in exc.build_log)[-1500:]
        raise ToolkitError(f"build of the edge image FROM {cfg.proxy_image} failed: {exc.msg}\n{tail}") from None
    except APIError as exc:
        raise ToolkitError(f"build of the edge image FROM {cfg.proxy_image} failed: {exc.explanation or exc}; "
                           f"is PROXY_IMAGE present (`inv lab.up` builds the lab's)?") from None
    finally:
        cli.close()
    out.write(f"  built {local}\n")
    return local


def ensure(cfg, out=sys.stdout) -> str:
    """The edge image's registry ref; built and pushed when the registry does not have this recipe yet."""
    tag = recipe_tag(cfg.proxy_image)
    repo = as_repo(cfg)
    if registry.manifest_digest(repo, tag) is None:
        registry.push(repo, build(cfg, tag, out), tag, out=out)
    return f"{cfg.registry}/{cfg.edge_image}:{tag}"
