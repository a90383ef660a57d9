"""Pure builders for the Swarm side of a deploy: names, the stack file, and every remote command.

Nothing here runs anything: each function returns a value, a dict or an argv list. deploy.ship.executor
puts them in order and hands them to the Runner (which echoes, redacts, dry-runs and times out).
Remote commands stay plain ``docker ...`` argv so that a dry run reads like a runbook.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote as urlquote

from deploy.ship import edge_stack

PROXY_CFG = Path(__file__).resolve().parent / "proxy" / "haproxy.cfg"   # an example rendering (edge_cfg renders the real one)
APP_PORT = 8000          # container contract: uWSGI HTTP on :8000
PROXY_PORT = 8080        # the proxy listens here inside its container
DB_USER = DB_NAME = "app"
# Health check timing for Swarm (the image's test command is kept; only the timing is overridden):
# a new task is healthy ~2 s after uWSGI answers; a broken one is unhealthy after START + RETRIES*INTERVAL.
# A 1 s interval costs one `python -m config.healthcheck` per task per second, and makes a rollout
# step ~2 s shorter than the image's own 10 s (engine 20.10 has no start_interval).
HEALTH = {"interval": "1s", "timeout": "3s", "retries": 3, "start_period": "15s"}
MONITOR = "4s"           # > interval * retries: a task that turns unhealthy right after starting still counts
TERMINAL = ("completed", "rollback_completed", "paused", "rollback_paused")


@dataclass(frozen=True)
class Paths:
    """Where things live on the manager (all under cfg.remote_dir)."""

    dir: str
    lock: str
    owner: str
    stack: str
    base: str
    proxy_cfg: str
    migrate_env: str
    audit: str
    docker_config: str


def paths(cfg) -> Paths:
    d = cfg.remote_dir.rstrip("/")
    return Paths(dir=d, lock=f"{d}/lock", owner=f"{d}/lock/owner", stack=f"{d}/stack.yml", base=f"{d}/stack-base.yml",
                 proxy_cfg=f"{d}/haproxy.cfg", migrate_env=f"{d}/migrate.env", audit=f"{d}/audit.log",
                 docker_config=f"{d}/docker")


def service(cfg, name: str) -> str:
    return f"{cfg.stack_name}_{name}"


def network(cfg) -> str:
    return f"{cfg.stack_name}_backend"


def digest8(content: str | bytes) -> str:
    data = content.encode() if isinstance(content, str) else content
    return hashlib.sha256(data).hexdigest()[:10]


def database_url(cfg) -> str:
    return f"postgres://{DB_USER}:{urlquote(cfg.postgres_password, safe='')}@db:5432/{DB_NAME}"


def secret_values(cfg) -> dict[str, str]:
    """The app's secrets by their file name under /run/secrets."""
    return {"django_secret_key": cfg.django_secret_key, "database_url": database_url(cfg),
            "postgres_password": cfg.postgres_password, **edge_stack.secret_values(cfg)}


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


def _ports(cfg, target: int) -> list:
    return [{"target": target, "published": cfg.published_port, "protocol": "tcp", "mode": cfg.publish_mode}]


def stack_spec(cfg, image: str, tag: str, release: str, proxy_cfg_name: str, only: tuple | None = None,
               parallelism: int = 1, edge_ref: str = "") -> dict:
    """The compose (v3.8) stack as a dict. ``only`` keeps a subset of services (the base deploy).

    A deploy replaces app tasks one at a time (``parallelism`` 1); `inv rollback` passes 0 (all at once,
    still start-first, so still without downtime): going back to a known version is the urgent case."""
    names = secret_names(cfg)
    app_env = {
        "APP_VERSION": tag,
        "DJANGO_ALLOWED_HOSTS": cfg.django_allowed_hosts,
        "DJANGO_SECRET_KEY_FILE": "/run/secrets/django_secret_key",
        "DATABASE_URL_FILE": "/run/secrets/database_url",
        "DATABASE_WAIT_TIMEOUT": "60",
        "DJANGO_MANAGEPY_MIGRATE": "off",   # migrations run once, before the rollout (deploy.ship.executor)
        "DJDEPLOY_RELEASE": release,        # every deploy is an update, so convergence is always observable
    }
    app_env.update(edge_stack.app_environment(cfg))
    if cfg.django_trusted_proxy or not cfg.proxy:
        app_env["DJANGO_TRUSTED_PROXY"] = cfg.django_trusted_proxy or cfg.trusted_lb
    app = {
        "image": image,
        "environment": app_env,
        "secrets": [{"source": "django_secret_key", "target": "django_secret_key"},
                    {"source": "database_url", "target": "database_url"}],
        "networks": ["backend"],
        "healthcheck": dict(HEALTH),
        "stop_grace_period": f"{cfg.stop_grace_period}s",
        # Spread replicas over the nodes (a no-op on one node): losing a node loses as few replicas as possible.
        "deploy": dict(_deploy_block(cfg, cfg.replicas, "start-first", parallelism),
                       placement={"preferences": [{"spread": "node.id"}]}),
    }
    if not cfg.proxy:
        app["ports"] = _ports(cfg, APP_PORT)
    elif not cfg.django_trusted_proxy:  # X-Forwarded-Proto from the stack network only (edge_stack.trusted_proxy_cmd)
        app["env_file"] = [edge_stack.app_env_file(cfg.remote_dir)]
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
    services = {"db": db, "app": app}
    spec = {"version": "3.8", "services": services,
            "networks": {"backend": {"driver": "overlay", "attachable": True}},
            "volumes": {"pgdata": {}},
            "secrets": {key: {"external": True, "name": name} for key, name in names.items()}}
    if cfg.proxy:
        services["proxy"] = {
            "image": cfg.proxy_image,
            "environment": {"APP_SERVICE": "app", "APP_SLOTS": str(cfg.replicas * 2 + 2),
                            "HEALTH_HOST": cfg.health_host},
            "configs": [{"source": "haproxy_cfg", "target": "/usr/local/etc/haproxy/haproxy.cfg"}],
            "ports": _ports(cfg, PROXY_PORT),
            "networks": ["backend"],
            "stop_grace_period": "10s",
            # One proxy per node (global): traffic enters on every node's host-mode port and reaches app
            # replicas on any node over the overlay network. stop-first: a host port cannot be bound twice.
            "deploy": dict({k: v for k, v in _deploy_block(cfg, 1, "stop-first").items() if k != "replicas"},
                           mode="global"),
        }
        spec["configs"] = {"haproxy_cfg": {"name": proxy_cfg_name, "file": paths(cfg).proxy_cfg}}
        if cfg.tls:
            edge_stack.apply(spec, cfg, edge_ref, _deploy_block(cfg, 1, "stop-first"))
    if only is not None:
        spec["services"] = {k: v for k, v in services.items() if k in only}
    return spec


def render(spec: dict) -> str:
    """JSON is YAML: the stack file is written as indented JSON (no YAML library needed)."""
    return json.dumps(spec, indent=2, sort_keys=False) + "\n"


# ---- remote commands (argv lists) -------------------------------------------------------------

def mkdir_cmd(cfg) -> list:
    return ["mkdir", "-p", "-m", "0700", paths(cfg).dir]


def lock_cmd(cfg) -> list:
    """Create the deploy dir (0700) and take the lock: mkdir of the lock dir is atomic, so exactly one
    deploy gets it. The holder's line comes on stdin and is read first (stdin is never left unread)."""
    p = paths(cfg)
    return ["sh", "-c", 'owner="$(cat)" && mkdir -p -m 0700 "$1" && mkdir "$2" && printf "%s\\n" "$owner" > "$2/owner"',
            "lock", p.dir, p.lock]


def lock_owner_cmd(cfg) -> list:
    return ["cat", paths(cfg).owner]


def unlock_cmd(cfg) -> list:
    return ["rm", "-rf", paths(cfg).lock]


def login_cmd(cfg) -> list:
    """The password goes on stdin; the credentials land in a private client config under remote_dir."""
    return ["docker", "--config", paths(cfg).docker_config, "login", "--username", cfg.registry_user,
            "--password-stdin", cfg.registry]


def secret_create_cmd(cfg, key: str, name: str) -> list:
    """The value goes on stdin. 'already exists' is fine (same name = same value)."""
    return ["docker", "secret", "create", "--label", f"com.docker.stack.namespace={cfg.stack_name}",
            "--label", f"djdeploy.secret={key}", name, "-"]


def stack_deploy_cmd(cfg, stack_file: str) -> list:
    return ["docker", "--config", paths(cfg).docker_config, "stack", "deploy", "--with-registry-auth",
            "--compose-file", stack_file, cfg.stack_name]


def migrate_env(cfg) -> str:
    """The one-off migration task's environment (uploaded with mode 0600, removed afterwards)."""
    lines = {"DATABASE_URL": database_url(cfg), "DJANGO_SECRET_KEY": cfg.django_secret_key,
             "DJANGO_ALLOWED_HOSTS": cfg.django_allowed_hosts, "DATABASE_WAIT_TIMEOUT": "60",
             "DJANGO_MANAGEPY_MIGRATE": "off"}
    return "".join(f"{k}={v}\n" for k, v in lines.items())


def migrate_cmd(cfg, image: str) -> list:
    p = paths(cfg)
    return ["docker", "--config", p.docker_config, "run", "--rm", "--network", network(cfg),
            "--env-file", p.migrate_env, "--label", f"djdeploy.stack={cfg.stack_name}",
            "--label", "djdeploy.role=migrate", image, "python", "manage.py", "migrate", "--noinput"]


def rm_cmd(path: str) -> list:
    return ["rm", "-f", path]


def update_status_cmd(cfg, name: str) -> list:
    return ["docker", "service", "inspect", "--format",
            "{{if .UpdateStatus}}{{.UpdateStatus.State}} {{.UpdateStatus.StartedAt}}{{end}}", service(cfg, name)]


def running_cmd(cfg, name: str) -> list:
    return ["docker", "service", "ps", "--filter", "desired-state=running", "--format",
            "{{.CurrentState}}|{{.Image}}|{{.Error}}", service(cfg, name)]


def update_message_cmd(cfg, name: str) -> list:
    return ["docker", "service", "inspect", "--format", "{{if .UpdateStatus}}{{.UpdateStatus.Message}}{{end}}",
            service(cfg, name)]


def finish_cmd(cfg) -> list:
    """Append the audit line, then release the lock whatever the append did: one round trip. The line
    comes on stdin, so the command is the same for every deploy (dry run == real run)."""
    p = paths(cfg)
    return ["sh", "-c", 'cat >> "$1"; status=$?; rm -rf "$2" && exit "$status"', "finish", p.audit, p.lock]


def audit_show_cmd(cfg, lines: int = 50) -> list:
    return ["tail", "-n", str(lines), paths(cfg).audit]


def tasks_by_node_cmd(cfg) -> list:
    """Which node runs which task of the stack (running tasks only)."""
    return ["docker", "stack", "ps", "--filter", "desired-state=running",
            "--format", "{{.Name}}\t{{.Node}}\t{{.CurrentState}}", cfg.stack_name]


def services_cmd(cfg) -> list:
    return ["docker", "stack", "services", "--format", "{{.Name}}\t{{.Replicas}}\t{{.Image}}", cfg.stack_name]


def service_status_cmd(cfg, name: str) -> list:
    return ["docker", "service", "inspect", "--format",
            "{{.Spec.Name}}\t{{if .UpdateStatus}}{{.UpdateStatus.State}}\t{{.UpdateStatus.CompletedAt}}\t"
            "{{.UpdateStatus.Message}}{{else}}created{{end}}", service(cfg, name)]


def logs_cmd(cfg, follow: bool, tail: int = 200) -> list:
    return ["docker", "service", "logs", "--timestamps", "--tail", str(tail)] + (["--follow"] if follow else []) + [
        service(cfg, "app")]


def running_tasks_cmd(cfg, name: str) -> list:
    return ["docker", "service", "ps", "--quiet", "--filter", "desired-state=running", service(cfg, name)]


def task_logs_cmd(task: str, tail: int = 200) -> list:
    return ["docker", "service", "logs", "--timestamps", "--tail", str(tail), task]


def parse_update_status(text: str) -> tuple[str, str]:
    """'updating 2026-...' -> ('updating', '2026-...'); '' (never updated) -> ('', '')."""
    state, _, started = text.strip().partition(" ")
    return state, started


def parse_running(text: str) -> tuple[int, list]:
    """Count tasks whose current state is Running; return (count, error lines)."""
    running, errors = 0, []
    for line in text.strip().splitlines():
        state, _, rest = line.partition("|")
        if state.startswith("Running"):
            running += 1
        err = rest.partition("|")[2].strip()
        if err:
            errors.append(err)
    return running, errors


def audit_line(*, when: str, who: str, action: str, env: str, git: str, image: str, digest: str, result: str) -> str:
    return f"{when} who={who} action={action} env={env} git={git} image={image} digest={digest or '-'} result={result}\n"


def parse_audit(text: str) -> list[dict]:
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        row = {"when": parts[0]}
        row.update(p.split("=", 1) for p in parts[1:] if "=" in p)
        rows.append(row)
    return rows


def previous_image(rows: list[dict]) -> str | None:
    """The image of the last successful deploy before the one now serving (for `inv rollback`)."""
    ok = [r["image"] for r in rows if r.get("result") == "ok" and r.get("image")]
    current = ok[-1] if ok else None
    for image in reversed(ok):
        if image != current:
            return image
    return None
