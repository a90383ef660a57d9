"""Tasks: operate a deployed environment (maintenance mode).

Thin: the steps are deploy.ops.maintenance; deploy/<env>.env is validated before any SSH connection.
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
