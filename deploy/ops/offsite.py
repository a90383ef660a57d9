"""Off-site copies of the backups to an S3-compatible bucket (BACKUP_S3_*, deploy.ship.offsite_config).

The backup service (deploy.ops.schedule) runs ``s3copy.pl sync`` after every round: each complete local backup
(manual, pre-migrate and scheduled ones alike) missing in the bucket goes to ``<prefix>/<reason>/<name>``, dump
first and sidecar last, and the daily/weekly retention applies to ``<prefix>/scheduled/``. A failed round logs
``backup: ERROR ...`` and the next one (BACKUP_POLL, at most 60 s later) retries; local files are never
touched. The client is Perl (HTTP::Tiny, Digest::SHA); its HTTPS needs IO::Socket::SSL and CA certificates, which
the backup image adds to POSTGRES_IMAGE (deploy.ops.backup_image). Certificates are always verified: against
BACKUP_S3_CA_FILE when set (the ``backup_s3_ca`` secret), else the system's CA bundle. The credentials are Swarm
secrets (files under /run/secrets), and on stdin (after the script, then the CA) for the one-off ``list``.
Pure builders only.
"""

from __future__ import annotations

from pathlib import Path

SCRIPT = Path(__file__).resolve().with_name("s3copy.pl")
# Swarm secret keys (and file names under /run/secrets): no longer than django_secret_key, so they fit Docker's
# 64-character secret names (<stack>_<key>_<10 hex>) wherever the toolkit's own secrets do.
SECRETS = ("backup_s3_key_id", "backup_s3_secret")
CA_SECRET = "backup_s3_ca"   # BACKUP_S3_CA_FILE's PEM (not secret, but versioned like the others)


def script() -> str:
    return SCRIPT.read_text(encoding="utf-8")


def environment(cfg) -> dict:
    """What the backup service needs besides its own variables (nothing when no bucket is configured)."""
    if not getattr(cfg, "offsite", False):
        return {}
    env = {"S3_ENDPOINT": cfg.backup_s3_endpoint, "S3_BUCKET": cfg.backup_s3_bucket,
           "S3_PREFIX": cfg.backup_s3_prefix, "S3_REGION": cfg.backup_s3_region, "S3_SCRIPT": script()}
    if getattr(cfg, "backup_s3_ca", ""):
        env["S3_CA_FILE"] = f"/run/secrets/{CA_SECRET}"
    return env


def secret_values(cfg) -> dict:
    """The backup service's secrets by file name under /run/secrets (deploy.ship.stackfile versions them)."""
    if not getattr(cfg, "offsite", False):
        return {}
    values = dict(zip(SECRETS, (cfg.backup_s3_access_key_id, cfg.backup_s3_secret_access_key)))
    if getattr(cfg, "backup_s3_ca", ""):
        values[CA_SECRET] = cfg.backup_s3_ca
    return values


def secrets(cfg) -> list:
    return [{"source": key, "target": key} for key in secret_values(cfg)]


def list_cmd(cfg, t) -> list:
    """The keys under the prefix, from a one-off container of the backup image on the stack's network (where
    the store answers, e.g. the lab's ``http://s3:5000``). The script, the two credentials and the CA (if any)
    come on stdin (``list_stdin``): argv stays short and holds no secret."""
    from deploy.ops import backup_image

    argv = ["docker", "--config", t.docker_config, "run", "--rm", "-i", "--network", t.network,
            "--label", f"djdeploy.stack={t.label}", "--label", "djdeploy.role=offsite-list",
            "--env", "S3_CREDENTIALS=stdin"]
    for key, value in environment(cfg).items():
        if key not in ("S3_SCRIPT", "S3_CA_FILE"):
            argv += ["--env", f"{key}={value}"]
    if getattr(cfg, "backup_s3_ca", ""):
        argv += ["--env", "S3_CA_FILE=-"]   # the rest of stdin
    return argv + ["--entrypoint", "perl", backup_image.image(cfg), "-", "list"]


def list_stdin(cfg) -> str:
    """``perl -`` reads the program up to ``__END__``; the script then reads the credentials from the rest, and
    with S3_CA_FILE=- the CA's PEM after them."""
    return (f"{script()}\n__END__\n{cfg.backup_s3_access_key_id}\n{cfg.backup_s3_secret_access_key}\n"
            f"{getattr(cfg, 'backup_s3_ca', '')}")


def copies(prefix: str, keys_text: str) -> set:
    """Names of the backups whose off-site copy is complete (the sidecar object exists)."""
    found = set()
    for key in keys_text.split():
        rest = key[len(prefix) + 1:] if key.startswith(prefix + "/") else ""
        reason, _, name = rest.partition("/")
        if reason and name.endswith(".dump.meta") and "/" not in name:
            found.add(name[: -len(".meta")])
    return found


def listing(site) -> set | str:
    """The complete copies (a set of names), or why the bucket could not be listed (a string)."""
    cfg = site.cfg
    res = site.run.run(list_cmd(cfg, site.target), stdin=list_stdin(cfg), hide=True, check=False, timeout=120)
    if site.run.dry_run:
        return set()
    if not res.ok:
        lines = [line for line in (res.stderr or "").splitlines() if line.strip()]
        return lines[-1].strip() if lines else f"exit {res.exited}"
    return copies(cfg.backup_s3_prefix, res.stdout)
