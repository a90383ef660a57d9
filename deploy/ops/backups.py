"""Backup, list and restore steps, the same for the local stack and a Swarm environment.

Each step takes a *site* (deploy.ops.sites): its ``target`` (deploy.ops.target.Target), a Runner where
the engine runs (``run``), the running ``release()`` and a ``maintenance()`` context. The builders are in
deploy.ops.backup; everything is checked (name, checksum, schema, confirmation) before anything changes.
"""

from __future__ import annotations

import sys

from deploy.core.errors import CommandFailed, ToolkitError
from deploy.ops import backup

REASONS = ("manual", "pre-migrate", "scheduled", "pre-restore", "uploaded")


def take(site, reason: str = "manual", release: str | None = None, out=sys.stdout) -> backup.Meta:
    """pg_dump -Fc into the site's backups dir; a failure (full disk included) leaves no complete-looking file."""
    t, run = site.target, site.run
    release = site.release() if release is None else release
    name = backup.backup_name(release)
    run.run(backup.mkdir_cmd(t), hide=True, timeout=30)
    try:
        res = run.run(backup.dump_cmd(t, name, backup.iso(), release, reason), stdin=t.password + "\n",
                      hide=True, timeout=site.timeout)
    except CommandFailed as exc:
        raise ToolkitError(_failure(t, exc)) from None
    if run.dry_run:
        return backup.Meta(name, "", release, reason, 0, "", ())
    _, size, digest = (res.stdout.strip().splitlines() or ["backup ? 0 ?"])[-1].split()[1:4]
    out.write(f"backup {name} ({backup.human_size(int(size))}, sha256 {digest[:12]}) in {t.backup_dir} "
              f"on {site.host}\n")
    return backup.Meta(name, "", release, reason, int(size), digest, ())


def _failure(t, exc: CommandFailed) -> str:
    tail = exc.output_tail or ""
    if exc.timed_out:
        why = str(exc).splitlines()[0]
    elif "No space left on device" in tail or "could not write" in tail:
        why = f"the disk holding {t.backup_dir} is full"
    else:
        # the docker CLI ends its errors with a hint line ("See 'docker run --help'."): the reason is before it
        lines = [line for line in tail.splitlines() if line.strip() and not line.startswith("See 'docker")]
        why = lines[-1].strip() if lines else f"exit {exc.exit_code}"
    return (f"backup of {t.what} failed: {why}; no backup was written (partial files removed); "
            f"free space or fix the cause, then `inv db.backup{t.flag}`")


def listing(site) -> list:
    res = site.run.run(backup.list_cmd(site.target), hide=True, timeout=60)
    return backup.parse_list(res.stdout)


def verify(site, name: str) -> backup.Meta:
    """The named backup exists and matches its sidecar (size and sha256), or a one-line error."""
    t = site.target
    backup.check_name(name)
    res = site.run.run(backup.verify_cmd(t, name), hide=True, check=False, timeout=site.timeout)
    if site.run.dry_run:
        return backup.Meta(name, "", "", "", 0, "", ())
    if res.exited == 4 or res.exited == 3:
        raise ToolkitError(f"no backup {name} in {t.backup_dir} on {site.host}; "
                           f"list them with `inv db.backups{t.flag}`")
    if not res.ok:
        raise CommandFailed(res.command, exit_code=res.exited, output_tail=res.stderr.strip())
    return backup.verified(name, res.stdout, f"{t.backup_dir} on {site.host}")


def check_schema(site, meta: backup.Meta) -> None:
    """Refuse a backup older than the database's schema (the running release needs those tables)."""
    t = site.target
    res = site.run.run(backup.schema_cmd(t), stdin=t.password + "\n", hide=True, check=False, timeout=120)
    if site.run.dry_run or not res.ok:  # no django_migrations table: an empty database, anything goes
        return
    missing = backup.newer_schema(res.stdout, meta)
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ToolkitError(f"refusing to restore {meta.name}: the database of {t.what} has a newer schema "
                           f"(migrations {shown} are not in the backup, taken at release {meta.release}); "
                           f"nothing was changed; restore a newer backup, or migrate the database back first")


def restore(site, name: str, confirm, out=sys.stdout) -> backup.Meta:
    """Verify, check the schema, confirm, then pg_restore --clean --if-exists in maintenance mode."""
    t = site.target
    meta = verify(site, name)
    check_schema(site, meta)
    confirm(f"replace the database of {t.what} with backup {name} (release {meta.release or '?'})")
    with site.maintenance():
        try:
            site.run.run(backup.restore_cmd(t, name), stdin=t.password + "\n", hide=True, timeout=site.timeout)
        except CommandFailed as exc:
            lines = [line for line in (exc.output_tail or "").splitlines() if line.strip()]
            raise ToolkitError(f"restore of {name} into {t.what} failed ({lines[-1].strip() if lines else exc}); "
                               f"it ran in one transaction, so the database is unchanged") from None
    out.write(f"restored {name} into {t.what}\n")
    return meta
