"""The local stack's settings and its `docker compose` command builders.

Pure: ``StackSettings.from_values`` validates the merged local settings (deploy.local.localenv) and reports
every problem together; the ``*_argv`` functions return argument lists and never run anything;
``parse_ps`` reads ``docker compose ps --format json``. The Runner runs them (deploy.local.lifecycle,
deploy.tasks.local).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from deploy.core.errors import ConfigError, ToolkitError
from deploy.core import project
from deploy.local import limits

ROOT = project.ROOT
APP, DB = "app", "db"
SOURCE = ".env / environment"
LAB_FIX = ("start Docker with the compose plugin (or, for this repository's test lab, run `inv lab.up`: it "
           "installs the engine and links the compose plugin)")
# One-off containers (shell, manage, migrate) must not migrate on start: `inv migrate --plan` shows the plan first.
ONEOFF_ENV = ("DJANGO_MANAGEPY_MIGRATE=off",)
SECRET_KEYS = ("POSTGRES_PASSWORD", "DJANGO_SECRET_KEY")

_PROJECT = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_REPOSITORY = re.compile(r"^[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*$")
_REGISTRY = re.compile(r"^[A-Za-z0-9.-]+(?::[0-9]+)?$")
_IMAGE_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")


@dataclass(frozen=True)
class StackSettings:
    """What every stack task needs, validated before any side effect."""

    project: str
    files: tuple
    app_image: str
    app_port: int
    postgres_image: str
    secrets: tuple = ()
    root: Path = ROOT

    @classmethod
    def from_values(cls, values: dict, root: Path = ROOT, environ: dict | None = None) -> "StackSettings":
        """Validate ``values`` (deploy.local.localenv.load); raise ConfigError listing every problem."""
        problems = []
        project = values.get("COMPOSE_PROJECT_NAME", "")
        if not _PROJECT.match(project):
            problems.append(f"COMPOSE_PROJECT_NAME={project!r}: use lowercase letters, digits, '_' and '-', "
                            "starting with a letter or digit")
        files = tuple(f for f in values.get("COMPOSE_FILE", "").split(":") if f)
        if not files:
            problems.append("COMPOSE_FILE is empty: name the compose file(s), ':'-separated (default docker-compose.yml)")
        for name in files:
            if not (root / name).is_file():
                problems.append(f"COMPOSE_FILE names {name}, which does not exist under {root}")
        app_image = values.get("APP_IMAGE", "")
        if not valid_repository(app_image):
            problems.append(f"APP_IMAGE={app_image!r}: give a repository name without a tag, e.g. djapp "
                            "or registry.example.com/team/djapp")
        raw_port = values.get("APP_PORT", "")
        port = int(raw_port) if raw_port.isdigit() else 0
        if not 1 <= port <= 65535:
            problems.append(f"APP_PORT={raw_port!r}: give a TCP port number between 1 and 65535")
        postgres_image = values.get("POSTGRES_IMAGE", "")
        if not _IMAGE_REF.match(postgres_image):
            problems.append(f"POSTGRES_IMAGE={postgres_image!r}: give an image reference, e.g. postgres:17-trixie")
        problems += limits.problems(values)
        if problems:
            raise ConfigError(problems, source=SOURCE)
        environ = {} if environ is None else environ
        secrets = tuple(v for k in SECRET_KEYS for v in (values.get(k), environ.get(k)) if v)
        return cls(project, files, app_image, port, postgres_image, secrets, root)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.app_port}/"


def valid_repository(name: str) -> bool:
    """A repository name without tag or digest; an optional registry host[:port] first."""
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return bool(_REGISTRY.match(first)) and bool(_REPOSITORY.match(rest))
    return bool(_REPOSITORY.match(name))


# ---- command builders --------------------------------------------------------------------------------

def base_argv(s: StackSettings, image_ref: str | None = None) -> list[str]:
    """``docker compose`` bound to this project: works from any directory, reads ROOT/.env.

    ``image_ref`` (e.g. djapp:abc1234) is handed to the compose file's ${APP_IMAGE_REF} through ``env``:
    visible in the echoed command, so what ran is what was printed.
    """
    argv = ["env", f"APP_IMAGE_REF={image_ref}"] if image_ref else []
    argv += ["docker", "compose", "--project-directory", str(s.root), "--project-name", s.project]
    for name in s.files:
        argv += ["--file", str(s.root / name)]
    return argv


def compose_version_argv() -> list[str]:
    return ["docker", "compose", "version", "--short"]


def engine_version_argv() -> list[str]:
    return ["docker", "version", "--format", "{{.Server.Version}}"]


def image_id_argv(ref: str) -> list[str]:
    return ["docker", "image", "inspect", "--format", "{{.Id}}", ref]


def up_argv(s: StackSettings, image_ref: str) -> list[str]:
    """Start detached with the images already present: compose never builds or pulls for `inv up`."""
    return base_argv(s, image_ref) + ["up", "--detach", "--no-build", "--pull", "never", "--remove-orphans"]


def down_argv(s: StackSettings, volumes: bool = False) -> list[str]:
    return base_argv(s) + ["down", "--remove-orphans"] + (["--volumes"] if volumes else [])


def logs_argv(s: StackSettings, service: str | None = None, follow: bool = False, tail: int | None = None) -> list[str]:
    argv = base_argv(s) + ["logs"]
    if follow:
        argv.append("--follow")
    if tail is not None:
        argv += ["--tail", str(tail)]
    return argv + ([service] if service else [])


def ps_argv(s: StackSettings, as_json: bool = False) -> list[str]:
    return base_argv(s) + ["ps", "--all"] + (["--format", "json"] if as_json else [])


def run_argv(s: StackSettings, image_ref: str, command: list[str], tty: bool = True) -> list[str]:
    """A one-off app container (removed afterwards) running ``command``; ``tty`` False adds --no-TTY."""
    argv = base_argv(s, image_ref) + ["run", "--rm"]
    for pair in ONEOFF_ENV:
        argv += ["--env", pair]
    if not tty:
        argv.append("--no-TTY")
    return argv + [APP] + list(command)


def shell_command(django: bool = False, command: str | None = None, args: list[str] | None = None) -> list[str]:
    """What `inv shell` runs: bash (or the Django shell); ``command`` is run with -c; ``args`` are appended."""
    args = list(args or [])
    if command is not None and args:
        raise ToolkitError("give the command either with --command or after --, not both")
    program = ["python", "manage.py", "shell"] if django else ["bash"]
    if command is not None:
        return program + ["-c", command]
    if args and not django:
        return args  # `inv shell -- ls -la /app` runs that program directly
    return program + args


def manage_command(args: list[str]) -> list[str]:
    if not args:
        raise ToolkitError("no manage.py command given; pass it after --, e.g. `inv manage -- showmigrations`")
    return ["python", "manage.py", *args]


def migrate_commands(plan: bool = False) -> list[list[str]]:
    """`inv migrate`: the plan first (with --plan), then the migration itself."""
    apply = ["python", "manage.py", "migrate", "--noinput"]
    return ([["python", "manage.py", "migrate", "--plan"]] if plan else []) + [apply]


# ---- reading compose output ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Container:
    service: str
    name: str
    state: str        # running, exited, restarting, created, ...
    health: str       # healthy, unhealthy, starting, or "" without a health check
    exit_code: int
    image: str
    ports: tuple      # published host ports

    @property
    def failed(self) -> bool:
        return self.state in ("exited", "dead", "restarting") or self.health == "unhealthy"


def parse_ps(text: str) -> list[Container]:
    """Parse ``docker compose ps --format json``: one JSON object per line (v2.21+) or one JSON array."""
    text = text.strip()
    if not text:
        return []
    rows = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines() if line.strip()]
    found = []
    for row in rows:
        ports = tuple(sorted({p.get("PublishedPort") for p in row.get("Publishers") or [] if p.get("PublishedPort")}))
        found.append(Container(row.get("Service", ""), row.get("Name", ""), row.get("State", ""),
                               row.get("Health", ""), int(row.get("ExitCode") or 0), row.get("Image", ""), ports))
    return found


def by_service(containers: list[Container]) -> dict[str, Container]:
    """The non-one-off container of each service (compose names one-offs <project>-<service>-run-<id>)."""
    return {c.service: c for c in containers if "-run-" not in c.name}


def failing_service(containers: list[Container]) -> str:
    """The service to blame when the stack is not healthy: the database first, since the app waits for it."""
    services = by_service(containers)
    for name in (DB, APP):
        c = services.get(name)
        if c is None or c.failed or (name == DB and c.health != "healthy"):
            return name
    return APP
