"""Tasks: operate a deployed environment (maintenance mode, prune).

Thin: the steps are deploy.ops.maintenance and deploy.ops.prune; deploy/<env>.env is validated before any SSH connection.
"""

from __future__ import annotations

from deploy.core.errors import ToolkitError
from deploy.tasks._base import task


@task(help={"mode": "on or off", "env": "the environment (deploy/<env>.env)",
            "message": "the text of the maintenance page (default: a short generic notice)",
            "retry_after": "seconds announced in the Retry-After header (default 300)"})
def maintenance(c, mode, env, message="", retry_after=300):
    """Turn maintenance mode on or off: the proxy answers 503 with Retry-After and a page; /health/ keeps working."""
    from deploy.ops import maintenance as maint
    from deploy.ship import config, ssh

    if mode not in ("on", "off"):
        raise ToolkitError(f"maintenance {mode!r}: say `inv maintenance on --env ENV` or `inv maintenance off --env ENV`")
    if message and mode == "off":
        raise ToolkitError("--message is for `maintenance on`; drop it")
    seconds = maint.check_retry_after(retry_after)
    cfg = config.load(env)
    run = ssh.remote_runner(cfg)
    try:
        maint.switch(cfg, run, on=mode == "on", message=message, retry_after=seconds)
    finally:
        run.ctx.close()


@task(help={"env": "the environment (deploy/<env>.env)",
            "keep": "how many of the last successful releases stay as rollback targets (default 3)",
            "dry_run": "print what would be removed (on each node, in the registry) and remove nothing"})
def prune(c, env, keep=3, dry_run=False):
    """Remove old releases on every node and in the registry (GC: lab registry only), stopped tasks, unused secrets."""
    from deploy.ship import config, executor, ssh

    if not str(keep).isdigit() or int(keep) < 1:
        raise ToolkitError(f"--keep {keep}: keep at least 1 release (the one serving), e.g. --keep 3")
    cfg = config.load(env)
    run = ssh.remote_runner(cfg)
    from deploy.ops import prune as pruning

    try:
        owner = f"{executor.who()} action=prune since={executor.actions.now()}\n"
        pruning.prune(cfg, run, int(keep), bool(dry_run), owner, gc=_lab_gc(cfg))
    finally:
        run.ctx.close()


def _lab_gc(cfg):
    """The lab registry's garbage collection when ENV pushes to this machine's lab registry, else None."""
    from deploy.lab import registry_gc

    if not registry_gc.applies(cfg.registry):
        return None
    from invoke import Context

    from deploy.core.runner import Runner

    return lambda expected, out: registry_gc.collect(Runner(ctx=Context(), echo=False, out=out), expected, out)
