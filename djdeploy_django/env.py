"""Settings from the environment (the image contract): strict readers that fail with one line naming the variable, never its value.

Pure functions over a mapping (``os.environ`` by default) so the host's unit tests exercise them directly.
No Django import here: the entrypoint's preflight and the health check use this module too.
"""

from __future__ import annotations

import ipaddress
import os
import re
from urllib.parse import parse_qsl, unquote, urlsplit

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


class EnvError(Exception):
    """A missing or invalid variable. str() names the variable and says what to do; it never holds the value."""


def _get(name, environ):
    return (os.environ if environ is None else environ).get(name)


def secret(name, environ=None, required=True):
    """``NAME`` or the content of the file named by ``NAME_FILE`` (Docker secrets); both set is an error."""
    value, path = _get(name, environ), _get(name + "_FILE", environ)
    if value is not None and path is not None:
        raise EnvError(f"{name} and {name}_FILE are both set; set only one of them")
    if path is not None:
        try:
            with open(path, encoding="utf-8") as fh:
                value = fh.read().strip()
        except OSError as exc:
            raise EnvError(f"{name}_FILE names a file that cannot be read ({exc.strerror}); mount the secret file") from None
    if value is None and required:
        raise EnvError(f"{name} is not set; set it (or {name}_FILE) in the environment")
    return value


def required(name, environ=None):
    value = _get(name, environ)
    if value is None:
        raise EnvError(f"{name} is not set; set it in the environment")
    return value


def boolean(name, default, environ=None):
    value = _get(name, environ)
    if value is None:
        return default
    low = value.strip().lower()
    if low in TRUE:
        return True
    if low in FALSE:
        return False
    raise EnvError(f"{name} must be on/off (or true/false, 1/0)")


def integer(name, default, environ=None, minimum=0):
    value = _get(name, environ)
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise EnvError(f"{name} must be a whole number") from None
    if number < minimum:
        raise EnvError(f"{name} must be at least {minimum}")
    return number


def secret_key(environ=None):
    key = secret("DJANGO_SECRET_KEY", environ)
    if len(key) < 50 or len(set(key)) < 5 or key.startswith("django-insecure-"):
        raise EnvError("DJANGO_SECRET_KEY is too weak (at least 50 characters, 5 distinct); "
                       "generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(50))'")
    return key


_HOST = re.compile(r"^(\*|\.?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.?|\[[0-9A-Fa-f:.]+\])$")


def allowed_hosts(environ=None):
    """DJANGO_ALLOWED_HOSTS: a comma list of host names (``.example.com`` = domain and subdomains, ``*`` = any)."""
    raw = required("DJANGO_ALLOWED_HOSTS", environ)
    hosts = [h.strip().lower() for h in raw.split(",") if h.strip()]
    if not hosts:
        raise EnvError("DJANGO_ALLOWED_HOSTS is empty; list the host names this app answers to, comma separated")
    bad = [h for h in hosts if not _HOST.match(h)]
    if bad:
        raise EnvError(f"DJANGO_ALLOWED_HOSTS has {len(bad)} invalid entr{'y' if len(bad) == 1 else 'ies'} "
                       "(host names only: no scheme, port or path)")
    return hosts


def host_regex(hosts):
    """The Host-header regex uWSGI enforces before Django: the same names as ALLOWED_HOSTS, optional port."""
    if "*" in hosts:
        return r"^.+$"
    parts = []
    for host in hosts:
        if host.startswith("."):
            parts.append(r"([a-z0-9-]+\.)*" + re.escape(host[1:]))
        else:
            parts.append(re.escape(host))
    return "(?i)^(" + "|".join(parts) + r")(:[0-9]{1,5})?$"


def health_host(hosts):
    """A Host header the container's own health check can send (always allowed by the rule above)."""
    for host in hosts:
        if host != "*" and not host.startswith("."):
            return host
    first = hosts[0]
    return "localhost" if first == "*" else "health" + first


def trusted_proxies(environ=None):
    """DJANGO_TRUSTED_PROXY: comma list of addresses or networks whose forwarded-proto headers are trusted."""
    raw = _get("DJANGO_TRUSTED_PROXY", environ)
    if raw is None or not raw.strip():
        return ()
    try:
        return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in raw.split(",") if p.strip())
    except ValueError:
        raise EnvError("DJANGO_TRUSTED_PROXY must be IP addresses or networks (CIDR), comma separated") from None


_SCHEMES = {"postgres": "django.db.backends.postgresql", "postgresql": "django.db.backends.postgresql",
            "pgsql": "django.db.backends.postgresql"}


def database(environ=None):
    """DATABASE_URL (or DATABASE_URL_FILE): ``postgres://user:password@host:port/name?opt=v``; empty = no database."""
    url = secret("DATABASE_URL", environ)
    if url.strip() == "":
        return None
    where = "DATABASE_URL"
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise EnvError(f"{where} is not a valid URL; use postgres://USER:PASSWORD@HOST:PORT/NAME") from None
    if parts.scheme not in _SCHEMES:
        raise EnvError(f"{where} has an unsupported scheme; use postgres://USER:PASSWORD@HOST:PORT/NAME")
    name = unquote(parts.path.lstrip("/"))
    if not parts.hostname or not name:
        raise EnvError(f"{where} needs a host and a database name; use postgres://USER:PASSWORD@HOST:PORT/NAME")
    return {
        "ENGINE": _SCHEMES[parts.scheme],
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname,
        "PORT": str(port or 5432),
        "OPTIONS": dict(parse_qsl(parts.query)),
    }
