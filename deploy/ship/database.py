"""Where the app's Postgres is: DATABASE=stack (a db service in the stack, POSTGRES_PASSWORD) or
DATABASE=external (a managed Postgres: DATABASE_URL, a secret, and no db service); and NETWORK, an existing
attachable overlay the stack uses instead of creating <STACK_NAME>_backend (e.g. where a Postgres or an object
store already runs as another Swarm service; one stack per network: service names resolve network-wide).
MEDIA_VOLUME=on keeps uploads on a named volume instead (one node: the app's replicas all run on the manager).

Pure: called by deploy.ship.config.load after the layers are merged; one problem line per mistake.
"""

from __future__ import annotations

import re

NEEDS = {"stack": "POSTGRES_PASSWORD", "external": "DATABASE_URL"}
URL_RE = re.compile(r"^postgres(ql)?://([^/@]*@)?[^/@]+/[^/?]+")
NETWORK_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def required(raw: dict) -> tuple:
    """The secret the chosen DATABASE needs (checked with the other required keys)."""
    return (NEEDS[raw["DATABASE"]],) if raw.get("DATABASE") in NEEDS else ()


def check(raw: dict, origin: dict, problems: list) -> dict:
    """DATABASE (stack or external) and what it needs; NETWORK (an existing overlay)."""
    kind = raw["DATABASE"]
    if kind not in NEEDS:
        problems.append(f"{origin['DATABASE']}: DATABASE must be one of stack, external (got {kind!r})")
        return {"database": kind, "database_url": "", "network": raw["NETWORK"]}
    unused = NEEDS["external" if kind == "stack" else "stack"]
    if raw.get(unused, "").strip():
        problems.append(f"{origin[unused]}: {unused} is not used with DATABASE={kind}; remove it")
    url = raw.get("DATABASE_URL", "").strip()
    if kind == "external" and url and not URL_RE.match(url):
        problems.append(f"{origin['DATABASE_URL']}: DATABASE_URL must look like "
                        f"postgres://USER:PASSWORD@HOST:PORT/NAME (value not shown)")
    if kind == "external" and raw.get("BACKUP_SCHEDULE") == "on":
        problems.append(f"{origin['BACKUP_SCHEDULE']}: BACKUP_SCHEDULE=on backs up the stack's own db service, which "
                        "DATABASE=external has none of; use the managed database's backups, or `inv db.backup --env "
                        "ENV` (it dumps DATABASE_URL's database)")
    if raw["NETWORK"] and not NETWORK_RE.match(raw["NETWORK"]):
        problems.append(f"{origin['NETWORK']}: NETWORK must be a Docker network name (got {raw['NETWORK']!r})")
    return {"database": kind, "database_url": url if kind == "external" else "", "network": raw["NETWORK"]}


def media_volume(raw: dict, origin: dict, app_env: tuple, problems: list) -> bool:
    """MEDIA_VOLUME (on/off); refused together with uploads on S3 (APP_ENV_AWS_STORAGE_BUCKET_NAME)."""
    value = raw["MEDIA_VOLUME"]
    if value not in ("on", "off"):
        problems.append(f"{origin['MEDIA_VOLUME']}: MEDIA_VOLUME must be one of on, off (got {value!r})")
        return False
    if value == "on" and "AWS_STORAGE_BUCKET_NAME" in dict(app_env):
        problems.append(f"{origin['MEDIA_VOLUME']}: MEDIA_VOLUME=on and APP_ENV_AWS_STORAGE_BUCKET_NAME both place "
                        f"the uploads; keep one (S3 is what survives the loss of a node)")
    return value == "on"
