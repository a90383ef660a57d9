"""The environment's state a plan depends on, read with read-only queries (registry and manager).

The dry run reads it exactly as a real deploy does (no lock, nothing changed); a real deploy reads it again
under the lock (the plan's "confirm" step) and stops if it changed. See deploy.ship.plan.
"""

from __future__ import annotations

from deploy.ship import registry, swarm
from deploy.ship.plan import EnvState


def read(cfg, run, tag: str) -> EnvState:
    """Query the manager (app service update status, the stack's secrets) and the registry (the tag's digest)."""
    t = cfg.command_timeout
    status = run.run(swarm.update_status_cmd(cfg, "app"), hide=True, check=False, timeout=t)
    app = swarm.parse_update_status(status.stdout) if status.ok else None
    names = run.run(swarm.secret_ls_cmd(cfg), hide=True, check=False, timeout=t)
    secrets = frozenset(names.stdout.split()) if names.ok else frozenset()
    return EnvState(app=app, secrets=secrets, digest=registry.manifest_digest(cfg, tag))
