"""Pure builders for the Swarm side of a deploy: where files live on the manager, and every remote command.

Nothing here runs anything: each function returns a value or an argv list. deploy.ship.plan puts them in
order as steps; deploy.ship.executor hands them to the Runner (which echoes, redacts and times out). The
stack file itself is built by deploy.ship.stackfile.
Remote commands stay plain ``docker ...`` argv so that a dry run reads like a runbook.
"""

from __future__ import annotations

from dataclasses import dataclass

from deploy.ship.stackfile import database_url, network, service

TERMINAL = ("completed", "rollback_completed", "paused", "rollback_paused")


# Typed fields like config.DeployConfig (a shape-only pair for `duplicates`): different data, nothing to share.
@dataclass(frozen=True)
class Paths:
    """Where things live on the manager (all under cfg.remote_dir)."""

    dir: str
    lock: str
    owner: str
    stack: str
    base: str
    backup: str
    proxy_cfg: str
    migrate_env: str
    audit: str
    steps: str
    docker_config: str


def paths(cfg) -> Paths:
    d = cfg.remote_dir.rstrip("/")
    return Paths(dir=d, lock=f"{d}/lock", owner=f"{d}/lock/owner", stack=f"{d}/stack.yml", base=f"{d}/stack-base.yml",
                 backup=f"{d}/stack-backup.yml",
                 proxy_cfg=f"{d}/haproxy.cfg", migrate_env=f"{d}/migrate.env", audit=f"{d}/audit.log",
                 steps=f"{d}/steps.jsonl", docker_config=f"{d}/docker")


# ---- remote commands (argv lists) -------------------------------------------------------------

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
    """The one-off migration task's environment (uploaded with mode 0600, removed afterwards): the app's
    variables, and its secrets as NAME=value (``docker run`` cannot mount Swarm secrets; the contract reads
    NAME or NAME_FILE)."""
    lines = {"DATABASE_URL": database_url(cfg), "DJANGO_SECRET_KEY": cfg.django_secret_key,
             "DJANGO_ALLOWED_HOSTS": cfg.django_allowed_hosts, "DATABASE_WAIT_TIMEOUT": "60",
             "DJANGO_MANAGEPY_MIGRATE": "off"}
    lines.update(getattr(cfg, "app_env", ()))
    lines.update(getattr(cfg, "app_secrets", ()))
    return "".join(f"{k}={v}\n" for k, v in lines.items())


def network_create_cmd(cfg) -> list:
    """The stack's overlay, made before the migration when no base service would make it (DATABASE=external
    with PROXY=off). The namespace label makes `docker stack deploy` take it as the stack's own."""
    return ["docker", "network", "create", "--driver", "overlay", "--attachable", "--label",
            f"com.docker.stack.namespace={cfg.stack_name}", network(cfg)]


def migrate_cmd(cfg, image: str) -> list:
    p = paths(cfg)
    return ["docker", "--config", p.docker_config, "run", "--rm", "--network", network(cfg),
            "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
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
    """Append the audit line (stdin's first line) and the step timings (the rest, one JSON line) next to it,
    then release the lock whatever the appends did: one round trip. Everything comes on stdin, so the command
    is the same for every deploy (dry run == real run)."""
    p = paths(cfg)
    return ["sh", "-c", 'IFS= read -r line; printf "%s\\n" "$line" >> "$1"; status=$?; cat >> "$3"; '
            'rm -rf "$2" && exit "$status"', "finish", p.audit, p.lock, p.steps]


def audit_show_cmd(cfg, lines: int = 50) -> list:
    return ["tail", "-n", str(lines), paths(cfg).audit]


def last_steps_cmd(cfg) -> list:
    """The step timings of the last deploy or rollback (one JSON line)."""
    return ["tail", "-n", "1", paths(cfg).steps]


def secret_ls_cmd(cfg) -> list:
    """The names of the stack's Docker secrets (read-only; the plan creates only the missing ones)."""
    return ["docker", "secret", "ls", "--filter", f"label=com.docker.stack.namespace={cfg.stack_name}",
            "--format", "{{.Name}}"]


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


def audit_line(*, when: str, who: str, action: str, env: str, git: str, image: str, digest: str, result: str,
               dirty: bool = False, backup: str = "") -> str:
    """``backup``: the pre-migrate backup this deploy took (deploy.ops), named before the result."""
    return (f"{when} who={who} action={action} env={env} git={git} image={image} digest={digest or '-'} "
            f"tree={'dirty' if dirty else 'clean'}{' backup=' + backup if backup else ''} result={result}\n")


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
