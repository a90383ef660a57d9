"""Local settings for the developer tasks (build, smoke, compose): defaults < .env.example < .env < environment.

.env.example documents every default of the project (`inv init` writes it with the project's own names), so it is
read as the project's defaults: the toolkit and plain `docker compose` (whose file carries the same defaults) agree
without a .env. Both files are optional, but a malformed line is an error naming the file and line
(deploy.core.envfile). Nothing here writes to ``os.environ``.
"""

from __future__ import annotations

import os
from pathlib import Path

from deploy.core.envfile import plain, read_env_file
from deploy.core import project
from deploy.image import buildargs
from deploy.local import limits

ROOT = project.ROOT

DEFAULTS = {
    "APP_IMAGE": "djapp",                 # repository name of the app image (tag: git SHA)
    "APP_PORT": "8000",                   # published on 127.0.0.1 by the compose stack
    "POSTGRES_IMAGE": "postgres:17-trixie",
    # The local compose stack (docker-compose.yml reads the same names, with the same defaults):
    "COMPOSE_PROJECT_NAME": "djapp",      # containers, network and volume names start with it
    "COMPOSE_FILE": "docker-compose.yml",  # ':'-separated list; later files override earlier ones
    "POSTGRES_PASSWORD": "djapp-dev-only-password",  # development only; known here so output redacts it
    # `inv smoke`: the page it fetches (200, links a hashed static file); SMOKE_TEXT (optional): a text it contains.
    "SMOKE_PATH": "/",
    **limits.DEFAULTS,                    # APP_/DB_ MEMORY, CPUS, CPU_SHARES, PIDS (the hardened runtime's limits)
    "IMAGE_EXTRAS": "",                   # optional parts of the image contract, e.g. s3 (uploads on S3)
    **buildargs.DEFAULTS,                 # IMAGE_SYSTEM/BUILD_PACKAGES, IMAGE_SOURCE_BUILDS, IMAGE_ASSETS_*
}


def load(root: Path = ROOT, environ: dict | None = None) -> dict[str, str]:
    """Merged settings: DEFAULTS, then ``root/.env.example``, then ``root/.env``, then the process environment (for
    known keys and any key present in those files)."""
    environ = os.environ if environ is None else environ
    merged = dict(DEFAULTS)
    merged.update(plain(read_env_file(root / ".env.example", missing_ok=True)))
    merged.update(plain(read_env_file(root / ".env", missing_ok=True)))
    for key in list(merged):
        if key in environ:
            merged[key] = environ[key]
    return merged
