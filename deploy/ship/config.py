"""Per-environment deploy settings: deploy/<env>.env, validated completely before any side effect.

Precedence: flag > environment (``DJDEPLOY_<KEY>``) > env file > defaults. The prefix keeps a
developer's local ``DJANGO_SECRET_KEY`` from silently reaching production. A secret may also be
given as ``<KEY>_FILE`` (a path to a file holding it; relative paths are relative to the env file).
Every problem is reported at once with the file and line; the result is a frozen dataclass.
The env files live in deploy/ (``DJDEPLOY_ENV_DIR`` points elsewhere, e.g. for tests).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from pathlib import Path

from deploy.core.envfile import EnvValue, read_env_file
from deploy.core.errors import ConfigError
from deploy.core import project
from deploy.ship import tls_config

DEPLOY_DIR = Path(os.environ.get("DJDEPLOY_ENV_DIR") or project.ROOT / "deploy")  # where <env>.env files live
ENV_PREFIX = "DJDEPLOY_"
SECRET_KEYS = ("REGISTRY_PASSWORD", "DJANGO_SECRET_KEY", "POSTGRES_PASSWORD")
REQUIRED = ("MANAGER_HOST", "STACK_NAME", "REGISTRY", "REGISTRY_USER", "DJANGO_ALLOWED_HOSTS") + SECRET_KEYS

DEFAULTS = {
    "SSH_USER": "root",
    "SSH_PORT": "22",
    "SSH_KEY": "~/.ssh/id_ed25519",
    "KNOWN_HOSTS": "~/.ssh/known_hosts",
    "APP_IMAGE": "djapp",
    "REPLICAS": "2",
    "PUBLISHED_PORT": "80",
    "PUBLISH_MODE": "ingress",        # the lab: host (no IPVS, so no routing mesh)
    "ENDPOINT_MODE": "vip",           # the lab: dnsrr
    "PROXY": "on",                    # off where the routing mesh serves and no TLS/entry point is wanted
    "PROXY_IMAGE": "haproxy:3.0-trixie",
    "POSTGRES_IMAGE": "postgres:17-trixie",
    "REMOTE_DIR": "",                 # default /var/lib/djdeploy/<STACK_NAME>
    "HEALTH_URL": "",                 # default http://<MANAGER_HOST>:<PUBLISHED_PORT>/health/?ready=1
    "HEALTH_HOST": "",                # Host header for health checks; default: first DJANGO_ALLOWED_HOSTS entry
    "STOP_GRACE_PERIOD": "30",        # seconds; longer than uWSGI's drain
    "CONNECT_TIMEOUT": "10",          # SSH connect, banner and auth, seconds
    "COMMAND_TIMEOUT": "300",         # any one remote command, seconds
    "CONVERGE_TIMEOUT": "300",        # rollout (or rollback) to finish, seconds
    "DJANGO_TRUSTED_PROXY": "",       # default with the proxy: the stack network's subnet (read at deploy time)
    **tls_config.DEFAULTS,
}
KNOWN = set(REQUIRED) | set(DEFAULTS)
HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")
STACK_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
REGISTRY_RE = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
IMAGE_RE = re.compile(r"^[a-z0-9]+([._/-][a-z0-9]+)*$")


@dataclass(frozen=True)
class DeployConfig:
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
    tls_mode: str = "external"
    https_port: int = 443
    hsts_max_age: int = 3600
    hsts_include_subdomains: bool = False
    hsts_preload: bool = False
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    acme_directory: str = tls_config.LETSENCRYPT
    acme_email: str = ""
    acme_ca_root_file: str = ""
    acme_ca_root: str = ""
    acme_network: str = ""
    trusted_lb: str = ""
    edge_image: str = "djedge"
    cert_sync_interval: int = 10
    health_ca_file: str = ""

    @property
    def tls(self) -> bool:
        """True when the stack's proxies terminate TLS (TLS_MODE acme or files)."""
        return self.tls_mode in ("acme", "files")

    @property
    def secrets(self) -> tuple:
        """Values that must never be printed."""
        return tuple(s for s in (self.registry_password, self.django_secret_key, self.postgres_password, self.tls_key) if s)

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
    """Load and validate ``env``; raise ``ConfigError`` listing every problem (file:line) at once."""
    path = env_path(env, env_dir)
    environ = os.environ if environ is None else environ
    values = read_env_file(path)
    raw, origin, problems = {}, {}, []
    for key, val in DEFAULTS.items():
        raw[key], origin[key] = val, f"{path} (default {key})"
    for key, ev in values.items():
        base = key[:-5] if key.endswith("_FILE") and key[:-5] in SECRET_KEYS else key
        if base not in KNOWN:
            problems.append(f"{path}:{ev.line}: unknown key {key} (a typo? see deploy/prod.env.example)")
            continue
        if base != key:
            if base in values:
                problems.append(f"{path}:{ev.line}: set {base} or {key}, not both")
                continue
            secret = _read_secret_file(ev, path, problems)
            if secret is None:
                continue
            ev = EnvValue(secret, ev.line)
        raw[base], origin[base] = ev.value, f"{path}:{ev.line}"
    for key in sorted(KNOWN):
        if ENV_PREFIX + key in environ:
            raw[key], origin[key] = environ[ENV_PREFIX + key], f"environment {ENV_PREFIX}{key}"
    for key, val in (flags or {}).items():
        if val is not None:
            raw[key], origin[key] = str(val), f"flag for {key}"
    for key in REQUIRED:
        if not raw.get(key, "").strip():
            if key in raw:
                problems.append(f"{origin[key]}: {key} is empty")
            else:
                problems.append(f"{path}: {key} is required")
    conf = _convert(raw, origin, problems)
    hosts = [h for h in conf["django_allowed_hosts"].split(",") if h]
    conf.update(tls_config.convert(raw, lambda k: origin.get(k, k), problems, path.parent, hosts, conf))
    if not raw["HEALTH_URL"] and conf["tls_mode"] in ("acme", "files"):
        conf["health_url"] = f"https://{conf['manager_host']}:{conf['https_port']}/health/?ready=1"
    if problems:
        raise ConfigError(problems, source=str(path))
    return DeployConfig(env=env, source=str(path), **conf)


def _read_secret_file(ev: EnvValue, path: Path, problems: list) -> str | None:
    target = Path(os.path.expanduser(ev.value))
    if not target.is_absolute():
        target = path.parent / target
    try:
        return target.read_text(encoding="utf-8").strip()
    except OSError as exc:
        problems.append(f"{path}:{ev.line}: cannot read {target} ({exc.strerror or exc})")
        return None


def _convert(raw: dict, origin: dict, problems: list) -> dict:
    def where(key):
        return origin.get(key, key)

    def integer(key, low, high):
        try:
            n = int(raw[key])
            if low <= n <= high:
                return n
        except ValueError:
            pass
        problems.append(f"{where(key)}: {key} must be a whole number from {low} to {high} (got {raw[key]!r})")
        return low

    def choice(key, options):
        if raw[key] not in options:
            problems.append(f"{where(key)}: {key} must be one of {', '.join(options)} (got {raw[key]!r})")
        return raw[key]

    def match(key, regex, what):
        if raw.get(key) and not regex.match(raw[key]):
            problems.append(f"{where(key)}: {key} must be {what} (got {raw[key]!r})")
        return raw.get(key, "")

    c = {}
    c["manager_host"] = match("MANAGER_HOST", HOST_RE, "a host name or IP address")
    c["stack_name"] = match("STACK_NAME", STACK_RE, "lowercase letters, digits, '-' or '_', starting with a letter")
    c["registry"] = match("REGISTRY", REGISTRY_RE, "host[:port] without a scheme")
    c["app_image"] = match("APP_IMAGE", IMAGE_RE, "a lowercase repository name like djapp")
    for key in ("REGISTRY_USER", "REGISTRY_PASSWORD", "DJANGO_SECRET_KEY", "POSTGRES_PASSWORD", "SSH_USER",
                "PROXY_IMAGE", "POSTGRES_IMAGE", "DJANGO_TRUSTED_PROXY"):
        c[key.lower()] = raw.get(key, "")
    hosts = [h.strip() for h in raw.get("DJANGO_ALLOWED_HOSTS", "").split(",") if h.strip()]
    c["django_allowed_hosts"] = ",".join(hosts)
    c["ssh_port"] = integer("SSH_PORT", 1, 65535)
    c["replicas"] = integer("REPLICAS", 1, 100)
    c["published_port"] = integer("PUBLISHED_PORT", 1, 65535)
    c["stop_grace_period"] = integer("STOP_GRACE_PERIOD", 1, 3600)
    c["connect_timeout"] = float(integer("CONNECT_TIMEOUT", 1, 600))
    c["command_timeout"] = float(integer("COMMAND_TIMEOUT", 1, 7200))
    c["converge_timeout"] = float(integer("CONVERGE_TIMEOUT", 10, 7200))
    c["publish_mode"] = choice("PUBLISH_MODE", ("ingress", "host"))
    c["endpoint_mode"] = choice("ENDPOINT_MODE", ("vip", "dnsrr"))
    c["proxy"] = choice("PROXY", ("on", "off")) == "on"
    if not c["proxy"] and c["publish_mode"] == "host" and c["replicas"] > 1:
        problems.append(f"{where('PROXY')}: PROXY=off with PUBLISH_MODE=host admits one app task per node and no "
                        f"start-first update; use PROXY=on (or PUBLISH_MODE=ingress where the routing mesh works)")
    key_text = raw.get("DJANGO_SECRET_KEY", "")
    if key_text and (len(key_text) < 50 or len(set(key_text)) < 5):
        problems.append(f"{where('DJANGO_SECRET_KEY')}: DJANGO_SECRET_KEY is too weak (at least 50 characters, 5 distinct); "
                        f"generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(50))'")
    for key in ("SSH_KEY", "KNOWN_HOSTS"):
        p = Path(os.path.expanduser(raw[key]))
        c[key.lower()] = str(p)
        if not p.is_file():
            problems.append(f"{where(key)}: {key} file {p} does not exist")
    stack = c["stack_name"] or "app"
    c["remote_dir"] = raw["REMOTE_DIR"] or f"/var/lib/djdeploy/{stack}"
    if not c["remote_dir"].startswith("/"):
        problems.append(f"{where('REMOTE_DIR')}: REMOTE_DIR must be an absolute path (got {raw['REMOTE_DIR']!r})")
    c["health_host"] = raw["HEALTH_HOST"] or (hosts[0] if hosts else "localhost")
    c["health_url"] = raw["HEALTH_URL"] or f"http://{c['manager_host']}:{c['published_port']}/health/?ready=1"
    if not c["health_url"].startswith(("http://", "https://")):
        problems.append(f"{where('HEALTH_URL')}: HEALTH_URL must start with http:// or https:// (got {raw['HEALTH_URL']!r})")
    return c


FIELD_NAMES = tuple(f.name for f in fields(DeployConfig))
