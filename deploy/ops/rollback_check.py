"""`inv rollback` to a release older than the applied migrations: name them and ask (``--yes`` for scripts).

A rollback never migrates: the database keeps its newer schema, and the older release runs on it. That is
fine for backward-compatible migrations and wrong otherwise, so before planning, a one-off container of the
TARGET image (Django's migration loader: what it has on disk vs what the database has applied) lists the
applied migrations that release does not know. None: the rollback goes on silently.
"""

from __future__ import annotations

import sys

from deploy.core.errors import ToolkitError

MARKER = "DJDEPLOY-UNKNOWN "
SCRIPT = r'''
import django
django.setup()
from django.db import connection
from django.db.migrations.loader import MigrationLoader
loader = MigrationLoader(connection)
unknown = sorted(".".join(k) for k in set(loader.applied_migrations) - set(loader.disk_migrations))
print("DJDEPLOY-UNKNOWN " + ",".join(unknown))
'''


def env_path(cfg) -> str:
    from deploy.ship import swarm

    return f"{swarm.paths(cfg).dir}/rollback-check.env"


def check_cmd(cfg, image: str) -> list:
    from deploy.ship import stackfile, swarm

    p = swarm.paths(cfg)
    return ["docker", "--config", p.docker_config, "run", "--rm", "-i", "--network", stackfile.network(cfg),
            "--env-file", env_path(cfg), "--label", f"djdeploy.stack={cfg.stack_name}",
            "--label", "djdeploy.role=rollback-check", image, "python", "-"]


def parse(output: str) -> list:
    for line in reversed(output.splitlines()):
        if line.startswith(MARKER):
            return [m for m in line[len(MARKER):].split(",") if m]
    raise ToolkitError("the rollback check printed no result; check `inv logs --env ENV` and the target image")


def unknown_migrations(cfg, run, image: str) -> list:
    """Applied migrations the target image does not have (the migration env file is removed afterwards)."""
    from deploy.ship import swarm

    run.put(swarm.migrate_env(cfg), env_path(cfg))  # the database URL and settings, 0600, removed afterwards
    try:
        res = run.run(check_cmd(cfg, image), stdin=SCRIPT, hide=True, check=False, timeout=cfg.command_timeout)
    finally:
        run.run(swarm.rm_cmd(env_path(cfg)), hide=True, check=False, timeout=30)
    if not res.ok:
        tail = "\n".join((res.stderr or res.stdout).strip().splitlines()[-5:])
        raise ToolkitError(f"the rollback check in {image} failed (exit {res.exited}); nothing was changed. "
                           f"Output:\n{tail}")
    return parse(res.stdout)


def confirm(cfg, run, tag: str, yes: bool, ask=input, tty=None) -> None:
    """Ask before rolling back under migrations the target does not know; refuse without a terminal or --yes."""
    unknown = unknown_migrations(cfg, run, cfg.image_ref(tag))
    if not unknown or yes:
        return
    what = (f"release {tag} is older than the database's schema: it does not know the applied migration(s) "
            f"{', '.join(unknown)} (a rollback does not undo migrations)")
    tty = sys.stdin.isatty() if tty is None else tty
    if not tty:
        raise ToolkitError(f"{what}; nothing was changed. If that release works on this schema, pass --yes")
    if ask(f"{what}.\nRoll back anyway? Type 'yes' to go on: ").strip().lower() != "yes":
        raise ToolkitError("rollback not confirmed; nothing was changed")
