"""The TLS keys of a deploy environment (issue 9), validated with the rest of deploy.ship.config.

TLS_MODE chooses where TLS ends and where certificates come from:
  acme      (default) the stack's proxies terminate TLS with certificates from an ACME CA (HTTP-01 through
            the stack's own proxy; Let's Encrypt unless ACME_DIRECTORY says otherwise);
  files     the same proxies, with the user's certificate and key (TLS_CERT_FILE, TLS_KEY_FILE), checked here;
  external  TLS ends at a load balancer before the stack: the proxies speak HTTP and keep X-Forwarded-Proto
            only from TRUSTED_LB.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from deploy.ship import certs

LETSENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
PRELOAD_MIN_AGE = 31536000   # hstspreload.org asks for at least a year with includeSubDomains
DEFAULTS = {
    "TLS_MODE": "acme",
    "HTTPS_PORT": "443",
    "HSTS_MAX_AGE": "3600",               # one hour to start with: raise it once HTTPS is proven
    "HSTS_INCLUDE_SUBDOMAINS": "off",
    "HSTS_PRELOAD": "off",
    "TLS_CERT_FILE": "",                  # TLS_MODE=files: PEM, leaf first, then the chain
    "TLS_KEY_FILE": "",                   # TLS_MODE=files: PEM, unencrypted
    "ACME_DIRECTORY": LETSENCRYPT,
    "ACME_EMAIL": "",
    "ACME_CA_ROOT_FILE": "",              # a private CA's root, to trust the ACME directory's HTTPS
    "ACME_NETWORK": "",                   # an existing attachable overlay network the certs service also joins
    "TRUSTED_LB": "",                     # TLS_MODE=external: the load balancers' addresses/CIDRs
    "EDGE_IMAGE": "djedge",               # repository of the proxy+certs image the toolkit builds
    "CERT_SYNC_INTERVAL": "10",           # seconds between two proxies' checks for a new certificate
    "HEALTH_CA_FILE": "",                 # CA bundle the deploy's HTTPS health check trusts (default: system)
}
FIELDS = ("tls_mode", "https_port", "hsts_max_age", "hsts_include_subdomains", "hsts_preload", "tls_cert_file",
          "tls_key_file", "tls_cert", "tls_key", "acme_directory", "acme_email", "acme_ca_root_file", "acme_ca_root",
          "acme_network", "trusted_lb", "edge_image", "cert_sync_interval", "health_ca_file")


@dataclass(frozen=True, kw_only=True)
class TlsFields:
    """The TLS part of deploy.ship.config.DeployConfig (its base class; keyword-only, with defaults)."""

    tls_mode: str = "external"
    https_port: int = 443
    hsts_max_age: int = 3600
    hsts_include_subdomains: bool = False
    hsts_preload: bool = False
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    acme_directory: str = LETSENCRYPT
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


EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
NET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _path(value: str, base: Path) -> Path:
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else base / p


def _networks(value: str) -> list | None:
    try:
        return [ipaddress.ip_network(p.strip(), strict=False) for p in value.split(",") if p.strip()]
    except ValueError:
        return None


def apply(raw: dict, origin: dict, problems: list, base: Path, conf: dict) -> None:
    """Add the TLS fields to the converted values ``conf``; with TLS at the proxy the health URL is https."""
    hosts = [h for h in conf["django_allowed_hosts"].split(",") if h]
    conf.update(convert(raw, lambda k: origin.get(k, k), problems, base, hosts, conf))
    if not raw["HEALTH_URL"] and conf["tls_mode"] in ("acme", "files"):
        conf["health_url"] = f"https://{conf['manager_host']}:{conf['https_port']}/health/?ready=1"


def convert(raw: dict, where, problems: list, base: Path, hosts: list[str], c: dict) -> dict:
    """Add the TLS fields to ``c`` (the other converted values); append every problem to ``problems``."""
    t = {"tls_mode": raw["TLS_MODE"], "acme_directory": raw["ACME_DIRECTORY"], "acme_email": raw["ACME_EMAIL"],
         "acme_network": raw["ACME_NETWORK"], "trusted_lb": raw["TRUSTED_LB"], "edge_image": raw["EDGE_IMAGE"],
         "tls_cert": "", "tls_key": "", "acme_ca_root": "", "tls_cert_file": "", "tls_key_file": "",
         "acme_ca_root_file": "", "health_ca_file": ""}
    mode = t["tls_mode"]
    if mode not in ("acme", "files", "external"):
        problems.append(f"{where('TLS_MODE')}: TLS_MODE must be one of acme, files, external (got {mode!r})")
    t.update(_numbers(raw, where, problems))
    if mode in ("acme", "files") and raw.get("PROXY") == "off":
        problems.append(f"{where('TLS_MODE')}: TLS_MODE={mode} needs the stack's proxy (PROXY=on); with PROXY=off "
                        f"TLS must end before the stack: TLS_MODE=external")
    if mode in ("acme", "files") and t["https_port"] == c.get("published_port"):
        problems.append(f"{where('HTTPS_PORT')}: HTTPS_PORT and PUBLISHED_PORT are both {t['https_port']}; "
                        f"HTTP (redirects, ACME) and HTTPS need two ports")
    if mode == "files":
        _files(raw, where, problems, base, hosts, t)
    if mode == "acme":
        _acme(raw, where, problems, base, hosts, t)
    if mode == "external":
        nets = _networks(t["trusted_lb"])
        if not t["trusted_lb"].strip() or nets is None:
            problems.append(f"{where('TRUSTED_LB')}: TLS_MODE=external needs TRUSTED_LB, the load balancers' "
                            f"addresses or CIDRs, comma separated (got {t['trusted_lb']!r})")
    if raw["HEALTH_CA_FILE"]:
        t["health_ca_file"] = str(_path(raw["HEALTH_CA_FILE"], base))
        if not Path(t["health_ca_file"]).is_file():
            problems.append(f"{where('HEALTH_CA_FILE')}: HEALTH_CA_FILE {t['health_ca_file']} does not exist")
    if not re.match(r"^[a-z0-9]+([._/-][a-z0-9]+)*$", t["edge_image"]):
        problems.append(f"{where('EDGE_IMAGE')}: EDGE_IMAGE must be a lowercase repository name like djedge "
                        f"(got {t['edge_image']!r})")
    return t


def _numbers(raw: dict, where, problems: list) -> dict:
    def integer(key, low, high):
        try:
            n = int(raw[key])
            if low <= n <= high:
                return n
        except ValueError:
            pass
        problems.append(f"{where(key)}: {key} must be a whole number from {low} to {high} (got {raw[key]!r})")
        return low

    def switch(key):
        if raw[key] not in ("on", "off"):
            problems.append(f"{where(key)}: {key} must be one of on, off (got {raw[key]!r})")
        return raw[key] == "on"

    n = {"https_port": integer("HTTPS_PORT", 1, 65535), "hsts_max_age": integer("HSTS_MAX_AGE", 0, 63072000),
         "hsts_include_subdomains": switch("HSTS_INCLUDE_SUBDOMAINS"), "hsts_preload": switch("HSTS_PRELOAD"),
         "cert_sync_interval": integer("CERT_SYNC_INTERVAL", 1, 3600)}
    if n["hsts_preload"] and not (n["hsts_include_subdomains"] and n["hsts_max_age"] >= PRELOAD_MIN_AGE):
        problems.append(f"{where('HSTS_PRELOAD')}: HSTS_PRELOAD=on needs HSTS_INCLUDE_SUBDOMAINS=on and "
                        f"HSTS_MAX_AGE of at least {PRELOAD_MIN_AGE} (a year); raise them once HTTPS is proven")
    return n


def _files(raw: dict, where, problems: list, base: Path, hosts: list[str], t: dict) -> None:
    missing = [k for k in ("TLS_CERT_FILE", "TLS_KEY_FILE") if not raw[k].strip()]
    for key in missing:
        problems.append(f"{where(key)}: TLS_MODE=files needs {key} (a PEM file)")
    if missing:
        return
    cert_path, key_path = _path(raw["TLS_CERT_FILE"], base), _path(raw["TLS_KEY_FILE"], base)
    t["tls_cert_file"], t["tls_key_file"] = str(cert_path), str(key_path)
    found, t["tls_cert"], t["tls_key"] = certs.check(cert_path, key_path, hosts)
    problems.extend(f"{where(p.split(' ', 1)[0])}: {p}" for p in found)


def _acme(raw: dict, where, problems: list, base: Path, hosts: list[str], t: dict) -> None:
    if not t["acme_directory"].startswith("https://"):
        problems.append(f"{where('ACME_DIRECTORY')}: ACME_DIRECTORY must be an https:// URL "
                        f"(got {t['acme_directory']!r})")
    if t["acme_email"] and not EMAIL_RE.match(t["acme_email"]):
        problems.append(f"{where('ACME_EMAIL')}: ACME_EMAIL must be an e-mail address (got {t['acme_email']!r})")
    if t["acme_network"] and not NET_RE.match(t["acme_network"]):
        problems.append(f"{where('ACME_NETWORK')}: ACME_NETWORK must be a Docker network name "
                        f"(got {t['acme_network']!r})")
    problems.extend(f"{where('DJANGO_ALLOWED_HOSTS')}: {p}" for p in certs.acme_problems(hosts))
    if raw["ACME_CA_ROOT_FILE"]:
        path = _path(raw["ACME_CA_ROOT_FILE"], base)
        t["acme_ca_root_file"] = str(path)
        try:
            t["acme_ca_root"] = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{where('ACME_CA_ROOT_FILE')}: ACME_CA_ROOT_FILE {path}: cannot read it "
                            f"({getattr(exc, 'strerror', None) or exc})")
            return
        if not certs.load_chain(t["acme_ca_root"].encode()):
            problems.append(f"{where('ACME_CA_ROOT_FILE')}: ACME_CA_ROOT_FILE {path}: no PEM certificate in it")
