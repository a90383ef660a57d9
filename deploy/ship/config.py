"""Per-environment deploy settings: deploy/<env>.env, validated completely before any side effect.

Precedence: flag > environment (``DJDEPLOY_<KEY>``) > env file > defaults. The prefix keeps a
developer's local ``DJANGO_SECRET_KEY`` from silently reaching production. A secret may also be
given as ``<KEY>_FILE`` in the file (relative paths: to the env file) or ``DJDEPLOY_<KEY>_FILE`` in the
environment (relative: to the current directory). A secret still holding a committed example's
placeholder is refused, and an unknown ``DJDEPLOY_*`` variable is reported as a likely typo.
Every problem is reported at once with the file and line; the result is a frozen dataclass. The env files
live in deploy/ (``DJDEPLOY_ENV_DIR`` points elsewhere, e.g. for tests).
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from deploy.core import project
from deploy.core.envfile import EnvValue, read_env_file
from deploy.core.errors import ConfigError
from deploy.ship import appsettings, database, offsite_config, tls_config
from deploy.ship.validate import convert

DEPLOY_DIR = Path(os.environ.get("DJDEPLOY_ENV_DIR") or project.ROOT / "deploy")  # where <env>.env files live
ENV_PREFIX = "DJDEPLOY_"
SECRET_KEYS = ("REGISTRY_PASSWORD", "DJANGO_SECRET_KEY", "POSTGRES_PASSWORD", "DATABASE_URL", *offsite_config.SECRET_KEYS)
REQUIRED = ("MANAGER_HOST", "STACK_NAME", "REGISTRY", "REGISTRY_USER", "DJANGO_ALLOWED_HOSTS", "REGISTRY_PASSWORD",
            "DJANGO_SECRET_KEY")

DEFAULTS = {
    "SSH_USER": "root",
    "SSH_PORT": "22",
    "SSH_KEY": "~/.ssh/id_ed25519",
    "KNOWN_HOSTS": "~/.ssh/known_hosts",
    "APP_IMAGE": "djapp",
    "REPLICAS": "2", "PUBLISHED_PORT": "80", "ROLLOUT_PARALLELISM": "0",  # new tasks a deploy starts at once; 0: all
    "PUBLISH_MODE": "ingress",        # the lab: host (no IPVS, so no routing mesh)
    "ENDPOINT_MODE": "vip",           # the lab: dnsrr
    "PROXY": "on",                    # off where the routing mesh serves and no TLS/entry point is wanted
    "PROXY_IMAGE": "haproxy:3.0-trixie", "POSTGRES_IMAGE": "postgres:17-trixie",
    "REMOTE_DIR": "",                 # default /var/lib/djdeploy/<STACK_NAME>
    "HEALTH_URL": "",                 # default http://<MANAGER_HOST>:<PUBLISHED_PORT>/health/?ready=1
    "HEALTH_HOST": "",                # Host header for health checks; default: first DJANGO_ALLOWED_HOSTS entry
    "STOP_GRACE_PERIOD": "30",        # seconds; longer than uWSGI's drain
    "CONNECT_TIMEOUT": "10",          # SSH connect, banner and auth, seconds
    "COMMAND_TIMEOUT": "300",         # any one remote command, seconds
    "CONVERGE_TIMEOUT": "300",        # rollout (or rollback) to finish, seconds
    "DJANGO_TRUSTED_PROXY": "",
    "ALLOW_DIRTY": "off",             # on: images of a -dirty tree may go here (the lab); else --allow-dirty
    "DATABASE": "stack",              # stack: a Postgres service in the stack; external: DATABASE_URL (a secret)
    "NETWORK": "",                    # an existing attachable overlay for this stack alone; default <STACK>_backend
    "MEDIA_VOLUME": "off",            # on: uploads on a named volume shared by the replicas, all on the manager
    # Limits of each Swarm service (CIS Docker Benchmark 5.10-5.11, 5.28): memory, CPUs, processes.
    "APP_MEMORY": "512M", "APP_CPUS": "1", "APP_PIDS": "256",
    "DB_MEMORY": "1G", "DB_CPUS": "1", "DB_PIDS": "512",
    "PROXY_MEMORY": "256M", "PROXY_CPUS": "0.5", "PROXY_PIDS": "128",
    # Scheduled backups (deploy.ops.schedule): a `backup` service in the stack; retention of scheduled ones.
    "BACKUP_SCHEDULE": "off", "BACKUP_INTERVAL": "86400", "BACKUP_KEEP_DAILY": "7", "BACKUP_KEEP_WEEKLY": "4",
    "STATIC_RELEASES": "2",           # each image also carries the hashed static files of this many previous releases
    **offsite_config.DEFAULTS,        # BACKUP_S3_*: the off-site copy of the backups
    **tls_config.DEFAULTS,            # TLS_MODE, HTTPS_PORT, HSTS_*, TLS_*_FILE, ACME_*, TRUSTED_LB (issue 9)
}
KNOWN = set(REQUIRED) | set(DEFAULTS) | set(SECRET_KEYS)
EXAMPLE_DIR = Path(__file__).resolve().parents[1]   # deploy/*.env.example: the committed examples
# DJDEPLOY_* variables that are not deploy settings (the toolkit's own and the lab's): not reported as typos.
TOOLKIT_VARIABLES = {"DJDEPLOY_ENV_DIR", "DJDEPLOY_PROJECT_DIR", "DJDEPLOY_RELEASE", "DJDEPLOY_SETTINGS_MODULE",
                     "DJDEPLOY_CONTRACT", "DJDEPLOY_BACKUP_DIR"}
TOOLKIT_PREFIXES = ("DJDEPLOY_LAB_", "DJDEPLOY_CLUSTER_", "DJDEPLOY_TEST_", "DJDEPLOY_BENCH_")


# A list of typed fields, like swarm.Paths (`duplicates` pairs them by shape only): different data, no shared code.
@dataclass(frozen=True)
class DeployConfig(tls_config.TlsFields, offsite_config.OffsiteFields):
    env: str
    source: str
    manager_host: str
    stack_name: str
    registry: str
    registry_user: str
    registry_password: str
    django_secret_key: str
    postgres_password: str
    django_allowed_hosts: str
    ssh_user: str
    ssh_port: int
    ssh_key: str
    known_hosts: str
    app_image: str
    replicas: int
    published_port: int
    publish_mode: str
    endpoint_mode: str
    proxy: bool
    proxy_image: str
    postgres_image: str
    remote_dir: str
    health_url: str
    health_host: str
    stop_grace_period: int
    connect_timeout: float
    command_timeout: float
    converge_timeout: float
    django_trusted_proxy: str
    allow_dirty: bool
    app_memory: str
    app_cpus: str
    app_pids: int
    db_memory: str
    db_cpus: str
    db_pids: int
    proxy_memory: str
    proxy_cpus: str
    proxy_pids: int
    backup_schedule: bool
    backup_interval: int
    backup_keep_daily: int
    backup_keep_weekly: int
    database: str = "stack"
    database_url: str = ""
    network: str = ""
    media_volume: bool = False
    static_releases: int = 2   # STATIC_RELEASES (deploy.image.bridge)
    rollout_parallelism: int = 0
    app_env: tuple = ()        # (NAME, value): APP_ENV_<NAME>
    app_secrets: tuple = ()    # (NAME, value): APP_SECRET_<NAME>, mounted as <NAME>_FILE

    @property
    def secrets(self) -> tuple:
        """Values that must never be printed."""
        found = (self.registry_password, self.django_secret_key, self.postgres_password, self.database_url,
                 self.tls_key, self.backup_s3_access_key_id, self.backup_s3_secret_access_key)
        return tuple(v for v in found + tuple(v for _, v in self.app_secrets) if v)

    @property
    def repository(self) -> str:
        return f"{self.registry}/{self.app_image}"

    def image_ref(self, tag: str) -> str:
        return f"{self.repository}:{tag}"

    def __repr__(self) -> str:  # never show secrets in a traceback or a log
        return f"DeployConfig(env={self.env!r}, stack={self.stack_name!r}, manager={self.manager_host!r})"


def env_names(env_dir: Path = DEPLOY_DIR) -> list[str]:
    """The environments that have a deploy/<env>.env file."""
    return sorted(p.name[: -len(".env")] for p in Path(env_dir).glob("*.env") if p.is_file() and p.name != ".env")


def env_path(env: str, env_dir: Path = DEPLOY_DIR) -> Path:
    names = env_names(env_dir)
    if not re.match(r"^[a-z0-9][a-z0-9_-]*$", env or "") or env not in names:
        valid = ", ".join(names) if names else "none yet"
        raise ConfigError(
            [f"unknown environment {env!r}; valid environments: {valid} "
             f"(each is a file {Path(env_dir)}/<env>.env; start from {Path(env_dir)}/prod.env.example)"])
    return Path(env_dir) / f"{env}.env"


def load(env: str, env_dir: Path = DEPLOY_DIR, environ: dict | None = None, flags: dict | None = None) -> DeployConfig:
    """Load and validate ``env``; raise ``ConfigError`` listing every problem (file:line) at once.

    ``flags`` maps KEY -> value from task flags (None: not given); they win over everything else."""
    path = env_path(env, env_dir)
    environ = os.environ if environ is None else environ
    raw = dict(DEFAULTS)
    origin = {key: f"{path} (default {key})" for key in DEFAULTS}
    problems: list = []
    app: dict = {}      # APP_ENV_* / APP_SECRET_* key -> (value, where)
    _file_layer(path, raw, origin, problems, app)
    _environment_layer(environ, raw, origin, problems, app)
    for key, val in (flags or {}).items():
        if val is not None:
            raw[key], origin[key] = str(val), f"flag for {key}"
    for key in REQUIRED + database.required(raw):
        if not raw.get(key, "").strip():
            problems.append(f"{origin[key]}: {key} is empty" if key in raw else f"{path}: {key} is required")
    _placeholders(raw, origin, problems)
    conf = convert(raw, origin, problems)
    conf.update(database.check(raw, origin, problems))
    conf["app_env"], conf["app_secrets"] = appsettings.check(app, problems)
    conf["media_volume"] = database.media_volume(raw, origin, conf["app_env"], problems)
    appsettings.check_lengths(conf["stack_name"], conf["app_secrets"], app, problems)
    tls_config.apply(raw, origin, problems, path.parent, conf)
    offsite_config.apply(raw, origin, problems, conf, path.parent)
    if problems:
        raise ConfigError(problems, source=str(path))
    return DeployConfig(env=env, source=str(path), **conf)


def _app_file_key(path: Path, key: str, ev: EnvValue, values: dict, problems: list, app: dict) -> None:
    """APP_ENV_<NAME>, APP_SECRET_<NAME> or APP_SECRET_<NAME>_FILE (a path relative to the env file)."""
    where = f"{path}:{ev.line}"
    if key.startswith(appsettings.SECRET_PREFIX) and key.endswith("_FILE"):
        if key[:-5] in values:
            problems.append(f"{where}: set {key[:-5]} or {key}, not both")
            return
        secret = _read_secret_file(ev.value, path.parent, where, problems)
        if secret is not None:
            app[key[:-5]] = (secret, where)
        return
    app[key] = (ev.value, where)


def _file_layer(path: Path, raw: dict, origin: dict, problems: list, app: dict) -> None:
    values = read_env_file(path)
    for key, ev in values.items():
        if appsettings.is_app_key(key):
            _app_file_key(path, key, ev, values, problems, app)
            continue
        base = key[:-5] if key.endswith("_FILE") and key[:-5] in SECRET_KEYS else key
        if base not in KNOWN:
            problems.append(f"{path}:{ev.line}: unknown key {key} (a typo? see deploy/prod.env.example)")
            continue
        if base != key:
            if base in values:
                problems.append(f"{path}:{ev.line}: set {base} or {key}, not both")
                continue
            secret = _read_secret_file(ev.value, path.parent, f"{path}:{ev.line}", problems)
            if secret is None:
                continue
            ev = EnvValue(secret, ev.line)
        raw[base], origin[base] = ev.value, f"{path}:{ev.line}"


def _app_environment(environ, name: str, key: str, problems: list, app: dict) -> None:
    if key.startswith(appsettings.SECRET_PREFIX) and key.endswith("_FILE"):
        if name[:-5] in environ:
            problems.append(f"environment: set {name[:-5]} or {name}, not both")
            return
        secret = _read_secret_file(environ[name], Path.cwd(), f"environment {name}", problems)
        if secret is not None:
            app[key[:-5]] = (secret, f"environment {name}")
        return
    app[key] = (environ[name], f"environment {name}")


def _environment_layer(environ, raw: dict, origin: dict, problems: list, app: dict) -> None:
    """``DJDEPLOY_<KEY>`` and, for secrets, ``DJDEPLOY_<KEY>_FILE`` (a path; relative to the current directory)."""
    for name in sorted(n for n in environ if n.startswith(ENV_PREFIX)):
        key = name[len(ENV_PREFIX):]
        if appsettings.is_app_key(key):
            _app_environment(environ, name, key, problems, app)
        elif key in KNOWN:
            if key in SECRET_KEYS and f"{name}_FILE" in environ:
                problems.append(f"environment: set {name} or {name}_FILE, not both")
                continue
            raw[key], origin[key] = environ[name], f"environment {name}"
        elif key.endswith("_FILE") and key[:-5] in SECRET_KEYS:
            if name[:-5] in environ:
                continue  # reported once, above
            secret = _read_secret_file(environ[name], Path.cwd(), f"environment {name}", problems)
            if secret is not None:
                raw[key[:-5]], origin[key[:-5]] = secret, f"environment {name}"
        elif not (name in TOOLKIT_VARIABLES or name.startswith(TOOLKIT_PREFIXES)):  # the toolkit's or the lab's
            problems.append(f"environment {name}: unknown variable (a typo?{_closest(key)}); "
                            f"the keys are listed in deploy/prod.env.example")


def _closest(key: str) -> str:
    names = sorted(KNOWN) + [f"{k}_FILE" for k in SECRET_KEYS]
    match = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    return f" did you mean {ENV_PREFIX}{match[0]}?" if match else ""


def placeholder_values(example_dir: Path = EXAMPLE_DIR) -> dict:
    """Placeholder secrets of the committed examples: value -> example file."""
    found = {}
    for example in sorted(example_dir.glob("*.env.example")):
        for key, ev in read_env_file(example).items():
            if key in SECRET_KEYS and ev.value.strip():
                found.setdefault(ev.value.strip(), example.name)
    return found


def _placeholders(raw: dict, origin: dict, problems: list) -> None:
    """A secret that is (or contains) an example's placeholder is refused; the value is never printed."""
    known = placeholder_values()
    for key in SECRET_KEYS:
        val = raw.get(key, "").strip().lower()
        for placeholder, example in known.items():
            if val and placeholder.lower() in val:
                problems.append(f"{origin[key]}: {key} is the placeholder of deploy/{example}; set a real secret")
                break


def _read_secret_file(value: str, base: Path, where: str, problems: list) -> str | None:
    target = Path(os.path.expanduser(value))
    if not target.is_absolute():
        target = base / target
    try:
        return target.read_text(encoding="utf-8").strip()
    except OSError as exc:
        problems.append(f"{where}: cannot read {target} ({exc.strerror or exc})")
        return None
