"""The deploy's operating steps, added to the engine's plan (deploy.ship.plan) before the migration gate:
check the migration plan (deploy.ops.migration_check), then back the database up when migrations are
pending (deploy.ops.backups). A refused check or a failed backup (a full disk included) stops the deploy
before anything is migrated or rolled out; the backup's name goes into the audit line.
"""

from __future__ import annotations

from deploy.core.errors import ToolkitError
from deploy.core.runner import quote
from deploy.ops import migration_check


def steps(cfg, rel, state) -> list:
    """The two plan steps (inserted between uploading the migration's environment and migrating)."""
    from deploy.ops.target import from_env
    from deploy.ship import plan

    from deploy.ops import backup

    allowed = " (unsafe ones allowed: --allow-unsafe-migrations)" if rel.allow_unsafe else ""
    return [plan.run("create the backups dir (pre-migrate and scheduled backups)", backup.mkdir_cmd(from_env(cfg))),
            plan.check(f"the migration plan: which migrations are pending, none breaking the running release{allowed}",
                       check_migrations, detail=quote(migration_check.check_cmd(cfg, "<the new image>")) +
                       " (script on stdin)"),
            plan.check("back up the database if migrations are pending (pg_dump -Fc, checksum sidecar)",
                       pre_migrate_backup, detail=f"into {from_env(cfg).backup_dir}, reason pre-migrate")]


def check_migrations(job, step) -> str:
    cfg = job.cfg
    res = job.manager.run(migration_check.check_cmd(cfg, job.pinned), stdin=migration_check.SCRIPT, hide=True,
                          check=False, timeout=cfg.command_timeout)
    if not res.ok:
        tail = "\n".join((res.stderr or res.stdout).strip().splitlines()[-10:])
        raise ToolkitError(f"the migration check failed (exit {res.exited}); nothing was migrated or rolled out: "
                           f"{cfg.env} keeps serving the previous version. Output:\n{tail}")
    pending, unsafe = migration_check.parse(res.stdout)
    job.facts["pending"] = pending
    if unsafe and job.state.app is None:  # a first deploy: no running release to break
        unsafe = []
    if unsafe and not job.release.allow_unsafe:
        raise ToolkitError(migration_check.refusal(unsafe, cfg.env))
    if not pending:
        return "no pending migrations"
    note = f"{len(pending)} pending: {', '.join(pending[:3])}{' ...' if len(pending) > 3 else ''}"
    if unsafe:
        note += f"; {len(unsafe)} unsafe operation(s) allowed by --allow-unsafe-migrations"
    return note


def pre_migrate_backup(job, step) -> str:
    from deploy.ops import backups, sites

    if not job.facts.get("pending"):
        return "skipped: no pending migrations"
    site = sites.EnvSite(job.cfg, out=job.out, run=job.manager)
    try:
        meta = backups.take(site, reason="pre-migrate", out=job.out)
    except ToolkitError as exc:
        raise ToolkitError(f"{exc}. The deploy stopped before migrating: {job.cfg.env} keeps serving the "
                           f"previous version") from None
    job.facts["backup"] = meta.name
    return meta.name
