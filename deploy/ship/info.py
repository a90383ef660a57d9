"""Read-only views of a deployed environment: status, audit log, logs (all over Fabric)."""

from __future__ import annotations

import sys

from deploy.ship import ssh, swarm


def _with_runner(cfg, out, fn):
    """Run ``fn(run)`` on the manager; an SSH failure on the way is one line (no traceback)."""
    from deploy.core.errors import ToolkitError
    from deploy.ship.report import is_ssh_error, short

    run = ssh.remote_runner(cfg, out=out)
    run.echo = False
    try:
        return fn(run)
    except Exception as exc:  # noqa: BLE001 - an SSH error becomes one line, anything else is re-raised
        if isinstance(exc, ToolkitError) or not is_ssh_error(exc):
            raise
        raise ToolkitError(f"reading {cfg.env} on {ssh.target(cfg)} failed ({short(exc)}); check the manager "
                           f"and the network, then rerun") from None
    finally:
        run.ctx.close()


def status(cfg, out=sys.stdout) -> None:
    def body(run):
        t = cfg.command_timeout
        services = run.run(swarm.services_cmd(cfg), hide=True, check=False, timeout=t)
        if not services.ok or not services.stdout.strip():
            out.write(f"stack {cfg.stack_name} is not deployed on {cfg.manager_host}\n")
            return
        out.write("SERVICE\tREPLICAS\tIMAGE\n" + services.stdout)
        for name in ("app", "db", "proxy") if cfg.proxy else ("app", "db"):
            res = run.run(swarm.service_status_cmd(cfg, name), hide=True, check=False, timeout=t)
            if res.ok:
                out.write("update: " + res.stdout.strip() + "\n")
        tasks = run.run(swarm.tasks_by_node_cmd(cfg), hide=True, check=False, timeout=t)
        if tasks.ok:
            out.write("TASK\tNODE\tSTATE\n" + tasks.stdout)
    _with_runner(cfg, out, body)


def audit(cfg, lines: int = 50, out=sys.stdout) -> None:
    def body(run):
        res = run.run(swarm.audit_show_cmd(cfg, lines), hide=True, check=False, timeout=cfg.command_timeout)
        out.write(res.stdout if res.ok else f"no audit log yet at {swarm.paths(cfg).audit}\n")
    _with_runner(cfg, out, body)


def last_steps(cfg, out=sys.stdout) -> None:
    """The step timing table of the last deploy or rollback (stored on the manager next to the audit log)."""
    import json

    from deploy.ship.report import stored_table

    def body(run):
        res = run.run(swarm.last_steps_cmd(cfg), hide=True, check=False, timeout=cfg.command_timeout)
        try:
            data = json.loads(res.stdout) if res.ok and res.stdout.strip() else None
        except ValueError:
            data = None
        out.write(stored_table(data) if data else f"no step timings yet at {swarm.paths(cfg).steps}\n")
    _with_runner(cfg, out, body)
