"""Raw configuration strings -> typed values, one problem line per mistake (where: what is wrong, got what).

Used by deploy.ship.config.load after the layers (defaults, env file, environment, flags) are merged.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")
STACK_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
REGISTRY_RE = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
IMAGE_RE = re.compile(r"^[a-z0-9]+([._/-][a-z0-9]+)*$")
MEMORY_RE = re.compile(r"^[1-9][0-9]*[KMGkmg]?$")  # like the local stack's limits: 512m and 512M
CPUS_RE = re.compile(r"^(0\.[0-9]*[1-9][0-9]*|[1-9][0-9]*(\.[0-9]+)?)$")


class _Checker:
    """Converts raw strings to typed values, appending one line per problem (where: what, got what)."""

    def __init__(self, raw: dict, origin: dict, problems: list):
        self.raw, self.origin, self.problems = raw, origin, problems

    def where(self, key: str) -> str:
        return self.origin.get(key, key)

    def integer(self, key: str, low: int, high: int) -> int:
        try:
            n = int(self.raw[key])
            if low <= n <= high:
                return n
        except ValueError:
            pass
        self.problems.append(f"{self.where(key)}: {key} must be a whole number from {low} to {high} (got {self.raw[key]!r})")
        return low

    def choice(self, key: str, options: tuple) -> str:
        if self.raw[key] not in options:
            self.problems.append(f"{self.where(key)}: {key} must be one of {', '.join(options)} (got {self.raw[key]!r})")
        return self.raw[key]

    def match(self, key: str, regex, what: str) -> str:
        if self.raw.get(key) and not regex.match(self.raw[key]):
            self.problems.append(f"{self.where(key)}: {key} must be {what} (got {self.raw[key]!r})")
        return self.raw.get(key, "")


def convert(raw: dict, origin: dict, problems: list) -> dict:
    ck = _Checker(raw, origin, problems)
    c = {}
    c["manager_host"] = ck.match("MANAGER_HOST", HOST_RE, "a host name or IP address")
    c["stack_name"] = ck.match("STACK_NAME", STACK_RE, "lowercase letters, digits, '-' or '_', starting with a letter")
    c["registry"] = ck.match("REGISTRY", REGISTRY_RE, "host[:port] without a scheme")
    c["app_image"] = ck.match("APP_IMAGE", IMAGE_RE, "a lowercase repository name like djapp")
    for key in ("REGISTRY_USER", "REGISTRY_PASSWORD", "DJANGO_SECRET_KEY", "POSTGRES_PASSWORD", "SSH_USER",
                "PROXY_IMAGE", "POSTGRES_IMAGE", "DJANGO_TRUSTED_PROXY"):
        c[key.lower()] = raw.get(key, "")
    hosts = [h.strip() for h in raw.get("DJANGO_ALLOWED_HOSTS", "").split(",") if h.strip()]
    c["django_allowed_hosts"] = ",".join(hosts)
    c["ssh_port"] = ck.integer("SSH_PORT", 1, 65535)
    c["replicas"] = ck.integer("REPLICAS", 1, 100)
    c["rollout_parallelism"] = ck.integer("ROLLOUT_PARALLELISM", 0, 100)
    c["published_port"] = ck.integer("PUBLISHED_PORT", 1, 65535)
    c["stop_grace_period"] = ck.integer("STOP_GRACE_PERIOD", 1, 3600)
    c["connect_timeout"] = float(ck.integer("CONNECT_TIMEOUT", 1, 600))
    c["command_timeout"] = float(ck.integer("COMMAND_TIMEOUT", 1, 7200))
    c["converge_timeout"] = float(ck.integer("CONVERGE_TIMEOUT", 10, 7200))
    c["publish_mode"] = ck.choice("PUBLISH_MODE", ("ingress", "host"))
    c["endpoint_mode"] = ck.choice("ENDPOINT_MODE", ("vip", "dnsrr"))
    c["proxy"] = ck.choice("PROXY", ("on", "off")) == "on"
    c["allow_dirty"] = ck.choice("ALLOW_DIRTY", ("on", "off")) == "on"
    c["backup_schedule"] = ck.choice("BACKUP_SCHEDULE", ("on", "off")) == "on"
    c["backup_interval"] = ck.integer("BACKUP_INTERVAL", 5, 2592000)
    c["backup_keep_daily"] = ck.integer("BACKUP_KEEP_DAILY", 1, 366)
    c["backup_keep_weekly"] = ck.integer("BACKUP_KEEP_WEEKLY", 0, 520)
    c["static_releases"] = ck.integer("STATIC_RELEASES", 0, 20)
    _limits(ck, c)
    _checks(ck, c, hosts)
    return c


def _limits(ck: _Checker, c: dict) -> None:
    """Per-service resource limits of the Swarm stack (memory like 512M, CPUs like 1.5, a PIDs count)."""
    for svc in ("APP", "DB", "PROXY"):
        c[f"{svc.lower()}_memory"] = ck.match(f"{svc}_MEMORY", MEMORY_RE, "a size like 512M or 2G")
        c[f"{svc.lower()}_cpus"] = ck.match(f"{svc}_CPUS", CPUS_RE, "a number of CPUs like 0.5 or 2")
        c[f"{svc.lower()}_pids"] = ck.integer(f"{svc}_PIDS", 16, 100000)


def _checks(ck: _Checker, c: dict, hosts: list) -> None:
    raw, problems, where = ck.raw, ck.problems, ck.where
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
    c["remote_dir"] = raw["REMOTE_DIR"] or f"/var/lib/djdeploy/{c['stack_name'] or 'app'}"
    if not c["remote_dir"].startswith("/"):
        problems.append(f"{where('REMOTE_DIR')}: REMOTE_DIR must be an absolute path (got {raw['REMOTE_DIR']!r})")
    c["health_host"] = raw["HEALTH_HOST"] or (hosts[0] if hosts else "localhost")
    c["health_url"] = raw["HEALTH_URL"] or f"http://{c['manager_host']}:{c['published_port']}/health/?ready=1"
    if not c["health_url"].startswith(("http://", "https://")):
        problems.append(f"{where('HEALTH_URL')}: HEALTH_URL must start with http:// or https:// (got {raw['HEALTH_URL']!r})")
