"""`inv logs --env ENV [--follow]`: the app service's logs on the Swarm manager (called by deploy.tasks.local).

Without --follow, the logs of each running task are fetched one by one: on engine 20.10 a plain
`docker service logs SERVICE` can print everything and then never exit once the service has tasks of a
rolled-back release; per-task calls end. --follow streams the whole service until Ctrl-C.
"""

from __future__ import annotations


def logs(env: str, follow: bool = False, out=None, tail: int = 200) -> None:
    """Show (or with ``follow`` stream) the logs of ENV's app service."""
    import sys

    from deploy.ship import config, ssh, swarm

    cfg = config.load(env)
    run = ssh.remote_runner(cfg, out=out or sys.stdout)
    try:
        if follow:
            run.run(swarm.logs_cmd(cfg, True, tail))
            return
        tasks = run.run(swarm.running_tasks_cmd(cfg, "app"), hide=True, timeout=cfg.command_timeout).stdout.split()
        for task in tasks:
            run.run(swarm.task_logs_cmd(task, tail), timeout=min(cfg.command_timeout, 60.0))
    finally:
        run.ctx.close()
