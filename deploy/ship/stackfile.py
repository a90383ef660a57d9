"""Pure builders of the Swarm stack file: names (services, versioned secrets, the proxy config) and the spec.

Nothing here runs anything. The stack file is written as indented JSON (JSON is YAML), so no YAML library
is needed. deploy.ship.swarm builds the remote commands that use these names.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import quote as urlquote

from deploy.ops import offsite
from deploy.ship import appsettings, edge_stack

PROXY_CFG = Path(__file__).resolve().parent / "proxy" / "haproxy.cfg"   # an example; deploy.ship.edge_cfg renders the real one
APP_PORT = 8000          # container contract: uWSGI HTTP on :8000
PROXY_PORT = 8080        # the proxy listens here inside its container
DB_USER = DB_NAME = "app"
MEDIA_ROOT = "/app/media"  # MEDIA_VOLUME=on: the volume's mount point (the image makes it, owned by uid 10001)
# Health check timing for Swarm (the image's test command is kept; only the timing is overridden):
# a new task is healthy ~2 s after uWSGI answers; a broken one is unhealthy after START + RETRIES*INTERVAL.
# A 1 s interval costs one `python -m config.healthcheck` per task per second, and makes a rollout
# step ~2 s shorter than the image's own 10 s (engine 20.10 has no start_interval).
HEALTH = {"interval": "1s", "timeout": "3s", "retries": 3, "start_period": "15s"}
MONITOR = "4s"           # > interval * retries: a task that turns unhealthy right after starting still counts
# Compose schema 3.9: the first whose deploy.resources.limits accept ``pids`` (the docker CLI on the manager
# must know it: CLI >= 23; engine 20.10 applies it, API 1.41).
VERSION = "3.9"
TMPFS_BYTES = 64 * 1024 * 1024
# What the Postgres image's entrypoint needs as root before it drops to the postgres user (chown of the data
# and socket directories, then setpriv): everything else is dropped.
DB_CAPS = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"]


def service(cfg, name: str) -> str:
    return f"{cfg.stack_name}_{name}"


def network(cfg) -> str:
    """The stack's overlay: its own ``<stack>_backend``, or the existing one NETWORK names."""
    return getattr(cfg, "network", "") or f"{cfg.stack_name}_backend"


def external_db(cfg) -> bool:
    return getattr(cfg, "database", "stack") == "external"


def base_services(cfg) -> tuple:
    """What the base deploy (before the migration) starts: the db service (unless external), the proxy and the
    certs service (the proxies' configuration, and with TLS at the proxy a certificate, before any app change)."""
    from deploy.ship import edge_relay

    relay = ("relay",) if edge_relay.enabled(cfg) else ()
    return (() if external_db(cfg) else ("db",)) + (("proxy", "certs") + relay if cfg.proxy else ())


def digest8(content: str | bytes) -> str:
    data = content.encode() if isinstance(content, str) else content
    return hashlib.sha256(data).hexdigest()[:10]


def database_url(cfg) -> str:
    if external_db(cfg):
        return cfg.database_url
    return f"postgres://{DB_USER}:{urlquote(cfg.postgres_password, safe='')}@db:5432/{DB_NAME}"


def secret_values(cfg) -> dict[str, str]:
    """The app's secrets by their file name under /run/secrets (app secrets: app_<name>)."""
    values = {"django_secret_key": cfg.django_secret_key, "database_url": database_url(cfg)}
    if not external_db(cfg):
        values["postgres_password"] = cfg.postgres_password
    values.update((appsettings.secret_key(name), value) for name, value in getattr(cfg, "app_secrets", ()))
    values.update(edge_stack.secret_values(cfg))
    values.update(offsite.secret_values(cfg))  # BACKUP_S3_*: the off-site copy's credentials (and private CA)
    return values


def secret_names(cfg) -> dict[str, str]:
    """Versioned Docker secret names: a new value gets a new name, so rotation is a rolling update
    (Swarm secrets are immutable). The suffix is a hash prefix of the value, never the value."""
    return {key: f"{cfg.stack_name}_{key}_{digest8(cfg.stack_name + ':' + value)}" for key, value in secret_values(cfg).items()}


def proxy_config_name(cfg, proxy_cfg_text: str) -> str:
    return f"{cfg.stack_name}_haproxy_{digest8(proxy_cfg_text)}"


def _deploy_block(cfg, replicas: int, order: str, parallelism: int = 1) -> dict:
    return {
        "replicas": replicas,
        "endpoint_mode": cfg.endpoint_mode,
        "update_config": {"parallelism": parallelism, "delay": "0s", "order": order, "failure_action": "rollback",
                          "monitor": MONITOR, "max_failure_ratio": 0},
        "rollback_config": {"parallelism": 1, "delay": "0s", "order": order, "failure_action": "pause",
                            "monitor": MONITOR, "max_failure_ratio": 0},
        "restart_policy": {"condition": "any", "delay": "2s"},
    }


def hardened(cfg, name: str, tmpfs=("/tmp",), cap_add=()) -> dict:
    """Read-only root filesystem with tmpfs where the image writes, no capabilities (but ``cap_add``), and the
    env file's memory/CPU/PIDs limits (CIS Docker Benchmark 5.10-5.12, 5.25, 5.28). no-new-privileges is not a
    Swarm service option on engine 20.10 (see README): the manager's daemon.json can set it for every container."""
    spec = {"read_only": True, "cap_drop": ["ALL"],
            "volumes": [{"type": "tmpfs", "target": t, "tmpfs": {"size": TMPFS_BYTES}} for t in tmpfs]}
    if cap_add:
        spec["cap_add"] = list(cap_add)
    limits = {"memory": getattr(cfg, f"{name}_memory"), "cpus": getattr(cfg, f"{name}_cpus"),
              "pids": getattr(cfg, f"{name}_pids")}
    return {"spec": spec, "limits": limits}


def _with_limits(service: dict, cfg, name: str, **kw) -> dict:
    h = hardened(cfg, name, **kw)
    out = dict(service, **{k: v for k, v in h["spec"].items() if k != "volumes"})
    out["volumes"] = list(service.get("volumes", [])) + h["spec"]["volumes"]
    out["deploy"] = dict(service["deploy"], resources={"limits": h["limits"]})
    return out


def _ports(cfg, target: int) -> list:
    return [{"target": target, "published": cfg.published_port, "protocol": "tcp", "mode": cfg.publish_mode}]


def _app(cfg, image: str, tag: str, release: str, parallelism: int) -> dict:
    env = {
        "APP_VERSION": tag,
        "DJANGO_ALLOWED_HOSTS": cfg.django_allowed_hosts,
        "DJANGO_SECRET_KEY_FILE": "/run/secrets/django_secret_key",
        "DATABASE_URL_FILE": "/run/secrets/database_url",
        "DATABASE_WAIT_TIMEOUT": "60",
        "DJANGO_MANAGEPY_MIGRATE": "off",   # migrations run once, before the rollout (a plan step)
        "DJDEPLOY_RELEASE": release,        # every deploy is an update, so convergence is always observable
    }
    env.update(edge_stack.app_environment(cfg))
    if cfg.django_trusted_proxy or not cfg.proxy:
        env["DJANGO_TRUSTED_PROXY"] = cfg.django_trusted_proxy or cfg.trusted_lb
    secrets = ["django_secret_key", "database_url"]
    for name, _ in getattr(cfg, "app_secrets", ()):   # APP_SECRET_<NAME>: the file's path, never the value
        env[f"{name}_FILE"] = f"/run/secrets/{appsettings.secret_key(name)}"
        secrets.append(appsettings.secret_key(name))
    # APP_ENV_<NAME>: as NAME (the toolkit's names are refused); `$$` keeps `docker stack deploy` from
    # interpolating a `$` in the value.
    env.update((name, value.replace("$", "$$")) for name, value in getattr(cfg, "app_env", ()))
    if getattr(cfg, "media_volume", False):          # uploads on the named volume, served by uWSGI under /media/
        env.update(DJANGO_MEDIA_ROOT=MEDIA_ROOT, UWSGI_STATIC_MAP2="/media/=/app/")
    app = {
        "image": image,
        "environment": env,
        "secrets": [{"source": key, "target": key} for key in secrets],
        "networks": ["backend"],
        "healthcheck": dict(HEALTH),
        "stop_grace_period": f"{cfg.stop_grace_period}s",
        # Spread replicas over the nodes (a no-op on one node): losing a node loses as few replicas as possible.
        "deploy": dict(_deploy_block(cfg, cfg.replicas, "start-first", parallelism),
                       placement={"preferences": [{"spread": "node.id"}]}),
    }
    if getattr(cfg, "media_volume", False):   # a local volume is per node: every replica on the manager
        app["volumes"] = [{"type": "volume", "source": "media", "target": MEDIA_ROOT}]
        app["deploy"]["placement"] = {"constraints": ["node.role == manager"]}
    if not cfg.proxy:
        app["ports"] = _ports(cfg, APP_PORT)
    elif not cfg.django_trusted_proxy:  # X-Forwarded-Proto from the stack network only (edge_stack.trusted_proxy_cmd)
        app["env_file"] = [edge_stack.app_env_file(cfg.remote_dir)]
    return _with_limits(app, cfg, "app")


def _db(cfg) -> dict:
    db = {
        "image": cfg.postgres_image,
        "environment": {"POSTGRES_USER": DB_USER, "POSTGRES_DB": DB_NAME},
        # Works with any image honoring POSTGRES_PASSWORD: the password comes from the secret file.
        "entrypoint": ["sh", "-c",
                       'POSTGRES_PASSWORD="$$(cat /run/secrets/postgres_password)"; export POSTGRES_PASSWORD; '
                       'exec docker-entrypoint.sh "$$@"', "sh"],
        "command": ["postgres"],
        "secrets": [{"source": "postgres_password", "target": "postgres_password"}],
        "volumes": ["pgdata:/var/lib/postgresql/data"],
        "networks": ["backend"],
        "stop_grace_period": "60s",
        "deploy": dict(_deploy_block(cfg, 1, "stop-first"), placement={"constraints": ["node.role == manager"]}),
    }
    return _with_limits(db, cfg, "db", tmpfs=("/tmp", "/var/run/postgresql"), cap_add=DB_CAPS)


def _proxy(cfg) -> dict:
    proxy = {
        "image": cfg.proxy_image,   # edge_stack.apply: the edge image built FROM it, and its environment
        "configs": [{"source": "haproxy_cfg", "target": "/usr/local/etc/haproxy/haproxy.cfg"}],
        "ports": _ports(cfg, PROXY_PORT),
        "networks": ["backend"],
        "stop_grace_period": "10s",
        # One proxy per node (global): traffic enters on every node's port and reaches app replicas on any
        # node over the overlay network. Start-first: ingress ports belong to the routing mesh; host-mode
        # ports are the relay's (deploy.ship.edge_relay), this proxy listens on a unix socket it hands over.
        "deploy": dict({k: v for k, v in _deploy_block(cfg, 1, "start-first").items() if k != "replicas"},
                       mode="global"),
    }
    return _with_limits(proxy, cfg, "proxy")


def stack_spec(cfg, image: str, tag: str, release: str, proxy_cfg_name: str, only: tuple | None = None,
               parallelism: int = 1) -> dict:
    """The compose (v3.9) stack as a dict. ``only`` keeps a subset of services (the base deploy).

    A deploy replaces app tasks one at a time (``parallelism`` 1); `inv rollback` passes 0 (all at once,
    still start-first, so still without downtime): going back to a known version is the urgent case."""
    from deploy.ship.swarm import paths

    services = {} if external_db(cfg) else {"db": _db(cfg)}
    services["app"] = _app(cfg, image, tag, release, parallelism)
    backend = {"driver": "overlay", "attachable": True}
    if getattr(cfg, "network", ""):   # NETWORK: an existing overlay (e.g. where an external Postgres runs)
        backend = {"external": True, "name": cfg.network}
    spec = {"version": VERSION, "services": services, "networks": {"backend": backend},
            "volumes": {**({} if external_db(cfg) else {"pgdata": {}}),
                        **({"media": {}} if getattr(cfg, "media_volume", False) else {})},
            "secrets": {key: {"external": True, "name": name} for key, name in secret_names(cfg).items()}}
    if getattr(cfg, "backup_schedule", False):
        from deploy.ops import schedule

        services["backup"] = schedule.service(cfg, tag)  # scheduled backups with retention (BACKUP_SCHEDULE=on)
    if cfg.proxy:
        services["proxy"] = _proxy(cfg)
        spec["configs"] = {"haproxy_cfg": {"name": proxy_cfg_name, "file": paths(cfg).proxy_cfg}}
        from deploy.ship import edge_image

        edge_stack.apply(spec, cfg, edge_image.ref(cfg), _deploy_block(cfg, 1, "stop-first"),
                         harden=lambda svc, caps=(): _with_limits(svc, cfg, "proxy", cap_add=caps))
    if not spec["volumes"]:
        del spec["volumes"]
    if only is not None:
        spec["services"] = {k: v for k, v in services.items() if k in only}
        used = {c["source"] for svc in spec["services"].values() for c in svc.get("configs", ())}
        if not used & set(spec.get("configs", {})):
            spec.pop("configs", None)   # stack deploy creates every declared config: only the kept services' ones
    return spec


def render(spec: dict) -> str:
    """JSON is YAML: the stack file is written as indented JSON (no YAML library needed)."""
    return json.dumps(spec, indent=2, sort_keys=False) + "\n"
