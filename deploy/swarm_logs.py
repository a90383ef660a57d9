"""`inv logs --env ENV [--follow]`: the app service's logs on the Swarm manager (called by deploy.tasks.stack)."""

from __future__ import annotations


def logs(env: str, follow: bool = False, out=None) -> None:
    """Stream ``docker service logs`` of ENV's app service; --follow until Ctrl-C."""
    import sys

    from . import config, ship_ssh, swarm

    cfg = config.load(env)
    run = ship_ssh.remote_runner(cfg, out=out or sys.stdout)
    try:
        # docker service logs can hang on a task in transition: a bounded wait unless following
        run.run(swarm.logs_cmd(cfg, follow), timeout=None if follow else min(cfg.command_timeout, 60.0))
    finally:
        run.ctx.close()
