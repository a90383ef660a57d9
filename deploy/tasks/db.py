"""Tasks: database backups of the local stack or a deployed environment (db.backup, db.backups, db.restore).

Thin: the steps are deploy.ops.backups (and deploy.ops.transfer for --download / --upload); the site
(deploy.ops.sites) is validated before any command runs.
"""

from __future__ import annotations

import sys

from deploy.core.errors import ToolkitError
from deploy.tasks._base import task

ENV_HELP = "a deployed environment (deploy/<env>.env); default: the local compose stack"


def confirmer(yes: bool):
    """A confirm(what) that passes with --yes, asks on a terminal, and refuses otherwise."""
    def confirm(what: str) -> None:
        if yes:
            return
        if not sys.stdin.isatty():
            raise ToolkitError(f"refusing to {what} without confirmation; pass --yes to confirm")
        answer = input(f"This will {what}. Type 'yes' to go on: ")
        if answer.strip().lower() != "yes":
            raise ToolkitError("nothing restored (not confirmed); the database is unchanged")
    return confirm


@task(help={"env": ENV_HELP,
            "download": "also copy the new backup from the manager to this machine's backups dir (--env only)"})
def backup(c, env=None, download=False):
    """Back up the database with pg_dump (custom format) into the backups dir, with a checksum sidecar."""
    from deploy.ops import backups, sites, transfer, target

    if download and not env:
        raise ToolkitError("--download copies from an environment's manager; give --env ENV")
    with sites.open_site(c, env) as site:
        meta = backups.take(site)
        if download:
            transfer.download(site, meta.name, target.local_backup_dir())


@task(name="backups", help={"env": ENV_HELP})
def list_backups(c, env=None):
    """List the backups with size, age, checksum, the release they were taken at and their off-site copy."""
    from deploy.ops import backup as builders
    from deploy.ops import backups, offsite, sites

    with sites.open_site(c, env) as site:
        found = backups.listing(site)
        if not found:
            print(f"no backups in {site.target.backup_dir} on {site.host}")
            return
        copies = offsite.listing(site) if getattr(getattr(site, "cfg", None), "offsite", False) else None
        if isinstance(copies, str):
            print(f"warning: cannot list the off-site copies in {site.cfg.offsite_url}: {copies}", file=sys.stderr)
            copies = None
        print(builders.table(found, offsite=copies), end="")


@task(help={"backup": "the backup's name, as `inv db.backups` lists it (with --upload: a local backup file)",
            "env": ENV_HELP, "yes": "do not ask before replacing the database (for scripts)",
            "upload": "first copy this local backup file (and its .meta) to the environment's manager"})
def restore(c, backup, env=None, yes=False, upload=False):
    """Replace the database with a backup: checksum and schema checked first, in maintenance mode."""
    from pathlib import Path

    from deploy.ops import backups, sites, transfer

    if upload and not env:
        raise ToolkitError("--upload copies to an environment's manager; give --env ENV")
    from deploy.ops.backup import check_name

    check_name(Path(backup).name if upload else backup)
    with sites.open_site(c, env) as site:
        name = transfer.upload(site, Path(backup)) if upload else backup
        backups.restore(site, name, confirmer(yes))
