"""Real-engine plumbing for the ops tests: one lab environment (a unique Swarm stack, deployed once per
session) and one private local compose project, both removed at the end.

The lab environment reuses the ship tests' helpers (tests/ship/shiphelpers.py: Env, Site, build_derived,
remove_stack), loaded under their own module name. The local project carries the labels
djdeploy.test=ops and djdeploy.owner=<pytest pid> (tests/ops/compose.labels.yml); its backups go to a
temporary DJDEPLOY_BACKUP_DIR.
"""

from __future__ import annotations

import http.client
import io
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "ship"))
import shiphelpers as ship  # noqa: E402  (the ship tests' helpers and fixtures)
# The test modules import these by name (`from conftest import` is ambiguous across test packages).
sys.modules["ops_ship_helpers"] = ship
sys.modules["ops_helpers"] = sys.modules[__name__]
OWNER = str(os.getpid())
FILES = "docker-compose.yml:tests/ops/compose.labels.yml"


class Local:
    """A private compose project driven through the real `inv` command line."""

    tls = None  # plain HTTP on 127.0.0.1 (shiphelpers.Site)

    def __init__(self, backups: Path):
        self.project = f"djops{OWNER}"
        self.port = ship.free_port()
        self.password = secrets.token_urlsafe(18)
        self.backups = backups
        self.env = {**os.environ, "COMPOSE_PROJECT_NAME": self.project, "APP_PORT": str(self.port),
                    "POSTGRES_PASSWORD": self.password, "COMPOSE_FILE": FILES, "DJDEPLOY_TEST_OWNER": OWNER,
                    "DJDEPLOY_BACKUP_DIR": str(backups), "PYTHONUNBUFFERED": "1"}
        self.env.pop("APP_IMAGE_REF", None)

    def inv(self, *args, check=True, timeout=600, **env):
        out = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env={**self.env, **env},
                             text=True, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        text = out.stdout + out.stderr
        assert self.password not in text, f"inv {' '.join(args)} printed the database password"
        if check:
            assert out.returncode == 0, f"inv {' '.join(args)} exited {out.returncode}:\n{text[-4000:]}"
        return out

    def compose(self, *args):
        argv = ["docker", "compose", "--project-directory", str(ROOT), "--project-name", self.project]
        for name in FILES.split(":"):
            argv += ["--file", str(ROOT / name)]
        return subprocess.run(argv + list(args), cwd=ROOT, env=self.env, text=True, capture_output=True, timeout=300)


@pytest.fixture(scope="session")
def local(docker_client, tmp_path_factory):
    stack = Local(tmp_path_factory.mktemp("opsbackups"))
    try:
        stack.inv("up", "--timeout", "180")
        yield stack
    finally:
        logs = stack.compose("logs", "--no-color", "--tail", "60")
        print(f"==== compose logs of {stack.project} ====\n{logs.stdout[-5000:]}{logs.stderr[-2000:]}")
        stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "5")


@pytest.fixture(scope="session")
def labenv(tmp_path_factory, request):
    """A lab environment with v1 deployed (the current tree's image), removed at the end."""
    problem = ship.lab_problem()
    if problem:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and this test needs the lab: {problem}", pytrace=False)
        pytest.skip(f"needs the lab: {problem}")
    from deploy.ship import executor

    e = ship.Env(tmp_path_factory.mktemp("opsenv"))
    try:
        e.tls = None  # plain HTTP (TLS_MODE=external): the operations under test do not depend on TLS
        e.write(REPLICAS="2")
        out = io.StringIO()
        e.v1 = e.tag("v1")
        outcome = executor.deploy(e.cfg(), tag=e.v1, build=True, out=out)
        assert outcome.result == "ok", out.getvalue()
        e.site = ship.Site(e)
        yield e
        if request.session.testsfailed:
            ship.dump_logs(e.stack)
    finally:
        ship.remove_stack(e.stack)
        from deploy.lab import acme, acme_env, paths

        acme_env.disconnect(ship.local_runner(), e.acme)  # the environment's own Pebble and its two networks
        acme.remove(ship.local_runner(), e.acme)

        for tag in e.tags + [t + "-static" for t in e.tags]:   # -static: a rollback's image (deploy.image.bridge)
            for ref in (f"djapp:{tag}", f"{paths.REGISTRY}/djapp:{tag}"):
                ship.docker("rmi", ref, check=False)


def env_inv(e, *args, timeout=600, stdin=None, **env):
    """`inv ARGS` against the lab environment ``e`` (stdin not a terminal unless given)."""
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, timeout=timeout, text=True,
                          env={**os.environ, "DJDEPLOY_ENV_DIR": str(e.dir), "PYTHONUNBUFFERED": "1", **env},
                          capture_output=True, input=stdin if stdin is not None else "")


class Load:
    """Threads GET / back to back; records (status, Retry-After) or the connection error of every request."""

    def __init__(self, port: int, threads: int = 4):
        self.port, self.results, self.stop = port, [], threading.Event()
        self.workers = [threading.Thread(target=self.loop, daemon=True) for _ in range(threads)]
        for w in self.workers:
            w.start()

    def loop(self):
        while not self.stop.is_set():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", "/", headers={"Host": "127.0.0.1"})
                resp = conn.getresponse()
                resp.read()
                self.results.append((resp.status, resp.getheader("Retry-After")))
                conn.close()
            except OSError as exc:
                self.results.append(("error", str(exc)))
            time.sleep(0.02)

    def finish(self) -> list:
        self.stop.set()
        for w in self.workers:
            w.join(15)
        return self.results
