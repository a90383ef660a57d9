"""Sites: a target plus the Runner where its engine runs (this machine, or the Swarm manager over SSH).

``LocalSite`` is the compose stack (maintenance = the app container stopped); ``EnvSite`` a deployed
environment (maintenance = deploy.ops.maintenance, the proxy's 503 page). Both validate their settings
before any command runs; ``open_site`` picks one from ``--env``.
"""

from __future__ import annotations

import contextlib
import os
import sys

from deploy.core.errors import ToolkitError
from deploy.ops import target as targets

LONG = 3600.0  # a dump or restore of a big database takes a while; still bounded


def image_tag(ref: str) -> str:
    """'reg:5000/djapp:abc1234@sha256:...' -> 'abc1234' ('' for no tag)."""
    ref = ref.partition("@")[0]
    last = ref.rpartition("/")[2]
    return last.rpartition(":")[2] if ":" in last else ""


class LocalSite:
    host = "this machine"
    timeout = LONG

    def __init__(self, ctx, out=sys.stdout, environ=None):
        from deploy.core.runner import Runner
        from deploy.local import compose, lifecycle, localenv

        environ = os.environ if environ is None else environ
        values = localenv.load(environ=environ)
        self.settings = compose.StackSettings.from_values(values, environ=environ)
        self.target = targets.from_local(self.settings, values, environ)
        self.run = Runner(ctx=ctx, secrets=self.settings.secrets + (self.target.password,), out=out)
        lifecycle.preflight(self.run)

    def _containers(self):
        from deploy.local import compose, lifecycle

        return compose.by_service(lifecycle.containers(self.run, self.settings))

    def release(self) -> str:
        found = self._containers()
        db = found.get("db")
        if db is None or db.state != "running":
            raise ToolkitError(f"the database of {self.target.what} is not running; start it with `inv up`")
        app = found.get("app")
        return image_tag(app.image) if app is not None and app.image else "none"

    @contextlib.contextmanager
    def maintenance(self):
        """The app container is stopped while the database is replaced, then started and waited for."""
        import time

        from deploy.local import compose, lifecycle

        self.run.run(compose.base_argv(self.settings) + ["stop", "app"], hide=True, timeout=120)
        try:
            yield
        finally:
            self.run.run(compose.base_argv(self.settings) + ["start", "app"], hide=True, timeout=120)
            lifecycle.wait_healthy(self.run, self.settings, time.monotonic() + 120)

    def close(self) -> None:
        pass


class EnvSite:
    def __init__(self, cfg, out=sys.stdout, dry_run: bool = False, run=None):
        """``run``: a Runner already on the manager (a deploy's); otherwise one is opened (and closed by close())."""
        from deploy.ship import ssh

        self.cfg = cfg
        self.owns = run is None
        self.target = targets.from_env(cfg)
        self.host = cfg.manager_host
        self.timeout = max(cfg.command_timeout, LONG)
        self.out = out
        self.run = run or ssh.remote_runner(cfg, dry_run=dry_run, out=out)

    def release(self) -> str:
        from deploy.ship import stackfile

        res = self.run.run(["docker", "service", "inspect", "--format",
                            "{{.Spec.TaskTemplate.ContainerSpec.Image}}", stackfile.service(self.cfg, "app")],
                           hide=True, check=False, timeout=30)
        return (image_tag(res.stdout.strip()) or "none") if res.ok else "none"

    @contextlib.contextmanager
    def maintenance(self):
        from deploy.ops import maintenance

        already = maintenance.is_on(self.cfg, self.run)
        if not already:
            maintenance.switch(self.cfg, self.run, on=True, message="", out=self.out)
        try:
            yield
        finally:
            if not already:
                maintenance.switch(self.cfg, self.run, on=False, out=self.out)

    def close(self) -> None:
        if self.owns and self.run.ctx is not None and hasattr(self.run.ctx, "close"):
            self.run.ctx.close()


@contextlib.contextmanager
def open_site(ctx, env: str | None, out=sys.stdout):
    """The local stack (no ``env``) or deploy/<env>.env's environment, validated first; closed afterwards."""
    if env:
        from deploy.ship import config

        site = EnvSite(config.load(env), out=out)
    else:
        site = LocalSite(ctx, out=out)
    try:
        yield site
    finally:
        site.close()
