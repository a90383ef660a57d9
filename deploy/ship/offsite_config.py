"""The off-site copy of the backups (BACKUP_S3_*), validated with the rest of deploy.ship.config.

A bucket of its own, not the uploads' store (APP_ENV_AWS_*): a dump holds the whole database (every account,
password hashes), the uploads' bucket is read by every app task and often public behind a CDN; separate
credentials can be limited to this bucket (list, put, delete under the prefix). The backup service
(deploy.ops.schedule) makes the copies, so BACKUP_S3_BUCKET needs BACKUP_SCHEDULE=on. With a bucket that
service runs the toolkit's backup image (deploy.ops.backup_image: POSTGRES_IMAGE plus Perl's TLS and the CA
bundle), pushed as BACKUP_IMAGE. A store whose certificate comes from a private CA is trusted through
BACKUP_S3_CA_FILE (PEM, read here; shipped as a versioned Swarm secret); without it the system's CAs are.
Certificates are always verified.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULTS = {
    "BACKUP_S3_BUCKET": "",      # empty: no off-site copy
    "BACKUP_S3_ENDPOINT": "",    # http[s]://host[:port] of an S3-compatible store; default AWS in the region
    "BACKUP_S3_REGION": "us-east-1",
    "BACKUP_S3_PREFIX": "",      # default backups/<STACK_NAME>
    "BACKUP_S3_CA_FILE": "",     # PEM of a private CA the store's certificate chains to; default: the system's CAs
    "BACKUP_IMAGE": "djbackup",  # repository of the backup image the toolkit builds (only with a bucket)
}
SECRET_KEYS = ("BACKUP_S3_ACCESS_KEY_ID", "BACKUP_S3_SECRET_ACCESS_KEY")
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
ENDPOINT_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
REGION_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
PREFIX_RE = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
IMAGE_RE = re.compile(r"^[a-z0-9]+([._/-][a-z0-9]+)*$")


@dataclass(frozen=True, kw_only=True)
class OffsiteFields:
    """The off-site part of deploy.ship.config.DeployConfig (a base class; keyword-only, with defaults)."""

    backup_s3_bucket: str = ""
    backup_s3_endpoint: str = ""
    backup_s3_region: str = "us-east-1"
    backup_s3_prefix: str = ""
    backup_s3_access_key_id: str = ""
    backup_s3_secret_access_key: str = ""
    backup_s3_ca_file: str = ""   # the path as resolved (for messages)
    backup_s3_ca: str = ""        # its PEM text (the backup_s3_ca secret)
    backup_image: str = "djbackup"

    @property
    def offsite(self) -> bool:
        return bool(self.backup_s3_bucket)

    @property
    def offsite_url(self) -> str:
        return f"s3://{self.backup_s3_bucket}/{self.backup_s3_prefix}/"


def _bad(raw: dict, origin: dict, key: str, regex, what: str) -> str | None:
    value = raw.get(key, "")
    if value and not regex.match(value):
        return f"{origin.get(key, key)}: {key} must be {what} (got {value!r})"
    return None


def ca_bundle(raw: dict, origin: dict, problems: list, base: Path, endpoint: str) -> tuple[str, str]:
    """BACKUP_S3_CA_FILE (relative: to the env file): (resolved path, PEM text), or ("", "") when not set."""
    from deploy.ship import certs

    value = raw.get("BACKUP_S3_CA_FILE", "").strip()
    if not value:
        return "", ""
    where = origin.get("BACKUP_S3_CA_FILE", "BACKUP_S3_CA_FILE")
    path = Path(os.path.expanduser(value))
    path = path if path.is_absolute() else Path(base) / path
    if not endpoint.startswith("https://"):
        problems.append(f"{where}: BACKUP_S3_CA_FILE needs an https:// BACKUP_S3_ENDPOINT (got {endpoint!r}); "
                        f"use https, or remove BACKUP_S3_CA_FILE")
        return "", ""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{where}: BACKUP_S3_CA_FILE {path}: cannot read it ({getattr(exc, 'strerror', None) or exc}); "
                        f"give the PEM file of the CA that signs the store's certificate, or remove "
                        f"BACKUP_S3_CA_FILE to trust the system's CA certificates")
        return "", ""
    if not certs.load_chain(text.encode()):
        problems.append(f"{where}: BACKUP_S3_CA_FILE {path}: no PEM certificate in it; give the CA's certificate "
                        f"in PEM (-----BEGIN CERTIFICATE-----)")
        return "", ""
    return str(path), text


def apply(raw: dict, origin: dict, problems: list, conf: dict, base: Path = Path(".")) -> None:
    """Check BACKUP_S3_* and BACKUP_IMAGE and put the typed values into ``conf`` (one problem line per mistake)."""
    conf["backup_image"] = raw.get("BACKUP_IMAGE", "djbackup").strip()
    if not IMAGE_RE.match(conf["backup_image"]):
        problems.append(f"{origin.get('BACKUP_IMAGE', 'BACKUP_IMAGE')}: BACKUP_IMAGE must be a lowercase repository "
                        f"name like djbackup (got {conf['backup_image']!r})")
    bucket = raw.get("BACKUP_S3_BUCKET", "").strip()
    if not bucket:
        stray = [k for k in (*DEFAULTS, *SECRET_KEYS) if k not in ("BACKUP_S3_BUCKET", "BACKUP_S3_REGION",
                                                                    "BACKUP_IMAGE") and raw.get(k, "").strip()]
        if stray:
            problems.append(f"{origin.get(stray[0], stray[0])}: {stray[0]} is set but BACKUP_S3_BUCKET is empty; "
                            f"set the bucket to copy backups off-site, or remove the BACKUP_S3_* keys")
        return
    raw = dict(raw, BACKUP_S3_ENDPOINT=raw.get("BACKUP_S3_ENDPOINT", "").strip().rstrip("/"),
               BACKUP_S3_PREFIX=raw.get("BACKUP_S3_PREFIX", "").strip().strip("/"))
    checks = (("BACKUP_S3_BUCKET", BUCKET_RE, "a bucket name: 3-63 lowercase letters, digits, '.' or '-'"),
              ("BACKUP_S3_ENDPOINT", ENDPOINT_RE, "http:// or https:// with a host[:port] and no path"),
              ("BACKUP_S3_REGION", REGION_RE, "a region name like us-east-1"),
              ("BACKUP_S3_PREFIX", PREFIX_RE, "a key prefix like backups/prod ('/'-separated letters, digits, "
                                              "'.', '_', '-')"))
    problems.extend(p for p in (_bad(raw, origin, *c) for c in checks) if p)
    for key in SECRET_KEYS:
        if not raw.get(key, "").strip():
            problems.append(f"{origin.get('BACKUP_S3_BUCKET')}: BACKUP_S3_BUCKET needs {key} (or {key}_FILE=path)")
    if raw.get("BACKUP_SCHEDULE") != "on":
        problems.append(f"{origin.get('BACKUP_S3_BUCKET')}: BACKUP_S3_BUCKET needs BACKUP_SCHEDULE=on (the backup "
                        f"service makes the off-site copies)")
    region = raw.get("BACKUP_S3_REGION") or "us-east-1"
    endpoint = raw["BACKUP_S3_ENDPOINT"] or f"https://s3.{region}.amazonaws.com"
    conf["backup_s3_ca_file"], conf["backup_s3_ca"] = ca_bundle(raw, origin, problems, base, endpoint)
    conf.update(backup_s3_bucket=bucket, backup_s3_region=region, backup_s3_endpoint=endpoint,
                backup_s3_prefix=raw["BACKUP_S3_PREFIX"] or f"backups/{conf.get('stack_name') or 'app'}",
                backup_s3_access_key_id=raw.get(SECRET_KEYS[0], "").strip(),
                backup_s3_secret_access_key=raw.get(SECRET_KEYS[1], "").strip())
