"""The edge image (deploy/ship/edge: HAProxy + Python 3 + certbot's acme): tagged by its recipe, built and pushed once.

The tag is a hash of the recipe's files and PROXY_IMAGE, so the proxy and certs services change only when the
recipe does (a deploy of a new app version never touches them). A tag already in the registry is not rebuilt
(deploy.ship.recipe_image, shared with the backup image).
"""

from __future__ import annotations

import sys
from pathlib import Path

from deploy.ship import recipe_image

EDGE_DIR = Path(__file__).resolve().parent / "edge"
FILES = ("Dockerfile", "edge-agent", "edge-entrypoint.sh", "edge_common.py", "edge_certs.py", "edge_sync.py")


def recipe_tag(proxy_image: str, edge_dir: Path = EDGE_DIR) -> str:
    return "e" + recipe_image.recipe_hash(proxy_image, edge_dir, FILES)


def ref(cfg) -> str:
    return f"{cfg.registry}/{cfg.edge_image}:{recipe_tag(cfg.proxy_image)}"


def build(cfg, tag: str, out=sys.stdout) -> str:
    """Build the edge image FROM PROXY_IMAGE through the SDK; return the local ref."""
    return recipe_image.build(EDGE_DIR, f"{cfg.edge_image}:{tag}", {"PROXY_IMAGE": cfg.proxy_image},
                              {"djdeploy.edge": tag}, f"the edge image FROM {cfg.proxy_image}",
                              "is PROXY_IMAGE present (`inv lab.up` builds the lab's)?", out=out)


def ensure(cfg, out=sys.stdout) -> str:
    """The edge image's registry ref; built and pushed when the registry does not have this recipe yet."""
    return recipe_image.ensure(cfg, cfg.edge_image, recipe_tag(cfg.proxy_image), lambda tag: build(cfg, tag, out),
                               out=out)
