"""Real-engine plumbing for the stack tests: `inv` run as a user runs it, on a private compose project.

Every session gets its own project name, a random free loopback port (APP_PORT) and a random database
password, so it never collides with the developer's own stack (djapp on 8000) nor with another session.
Everything carries the labels djdeploy.test=stack and djdeploy.owner=<pytest pid> (tests/stack/compose.labels.yml):
leftovers of sessions whose process is gone are removed at start; our own at the end (down --volumes).
A failing test prints the compose logs of its projects.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LABEL = "djdeploy.test=stack"
OWNER = str(os.getpid())
FILES = "docker-compose.yml:tests/stack/compose.labels.yml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Stack:
    """One compose project driven through the real `inv` command line."""

    def __init__(self, project: str, password: str, **extra_env):
        self.project = project
        self.port = free_port()
        self.password = password
        self.env = {**os.environ, "COMPOSE_PROJECT_NAME": project, "APP_PORT": str(self.port),
                    "POSTGRES_PASSWORD": password, "COMPOSE_FILE": FILES, "DJDEPLOY_TEST_OWNER": OWNER,
                    "PYTHONUNBUFFERED": "1", **extra_env}
        self.env.pop("APP_IMAGE_REF", None)

    def inv(self, *args: str, timeout: float = 900, check: bool = True, stdin: str | None = None, cwd: Path = ROOT):
        out = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=cwd, env=self.env, text=True,
                             capture_output=True, timeout=timeout, input=stdin if stdin is not None else "",)
        text = out.stdout + out.stderr
        assert self.password not in text, f"inv {' '.join(args)} printed the database password"
        if check:
            assert out.returncode == 0, f"inv {' '.join(args)} exited {out.returncode}:\n{text[-4000:]}"
        return out

    def up(self, *extra: str, **kw):
        """`inv up`. The first call builds/reuses the image of the tree under test; later calls pin that tag
        (--tag), so a file another developer saves meanwhile in a shared checkout cannot trigger a rebuild."""
        args = ["up", "--timeout", "120", *extra] + (["--tag", self.tag] if getattr(self, "tag", None) else [])
        out = self.inv(*args, **kw)
        if out.returncode == 0 and not getattr(self, "tag", None):
            image = self.compose("ps", "--format", "{{.Image}}", "app").stdout.strip()
            self.tag = image.rsplit(":", 1)[1]
        return out

    def compose(self, *args: str, check: bool = True):
        argv = ["docker", "compose", "--project-directory", str(ROOT), "--project-name", self.project]
        for name in FILES.split(":"):
            argv += ["--file", str(ROOT / name)]
        return subprocess.run(argv + list(args), cwd=ROOT, env=self.env, text=True, capture_output=True,
                              timeout=300, check=check)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def logs(self) -> str:
        out = self.compose("logs", "--no-color", "--tail", "80", check=False)
        return out.stdout + out.stderr

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "5", check=False)


class Browser:
    """A cookie-keeping HTTP client for the notes page (a real form POST with Django's CSRF token)."""

    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                  urllib.request.HTTPCookieProcessor(CookieJar()))

    def get(self, path: str = "/") -> str:
        with self.opener.open(self.base + path, timeout=10) as resp:
            assert resp.status == 200
            return resp.read().decode()

    def add_note(self, text: str) -> str:
        page = self.get("/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        data = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "text": text}).encode()
        with self.opener.open(self.base + "/", data=data, timeout=10) as resp:  # 302 to / is followed
            assert resp.status == 200 and resp.url.rstrip("/") == self.base
            return resp.read().decode()


def _pid_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
        return True
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True


def remove_leftovers(client) -> None:
    """Remove what crashed earlier sessions left (label djdeploy.test=stack, owner process gone)."""
    def stale(obj_labels):
        owner = (obj_labels or {}).get("djdeploy.owner", "")
        return owner != OWNER and not _pid_alive(owner)

    for c in client.containers.list(all=True, filters={"label": LABEL}):
        if stale(c.labels):
            c.remove(force=True, v=True)
    for n in client.networks.list(filters={"label": LABEL}):
        if stale(n.attrs.get("Labels")):
            n.remove()
    for v in client.volumes.list(filters={"label": LABEL}):
        if stale(v.attrs.get("Labels")):
            v.remove(force=True)
    # Images the tests build: djdeploy-test-fakedb:<pid> and djdeploy-test-stack<pid>:<tag>.
    # One low-level listing: images.list() inspects each image after listing, and fails when another
    # session removes one in between.
    for image in client.api.images():
        for tag in image.get("RepoTags") or ():
            m = re.match(r"^djdeploy-test-(?:fakedb:(\d+)$|stack(\d+):)", tag)
            if m and not _pid_alive(m.group(1) or m.group(2)):
                client.images.remove(tag, force=True)


@pytest.fixture(scope="session")
def stack_session(docker_client):
    remove_leftovers(docker_client)
    made = []

    def make(suffix: str = "", **extra_env) -> Stack:
        s = Stack(f"djst{OWNER}{suffix}", secrets.token_urlsafe(18), **extra_env)
        made.append(s)
        return s

    yield make
    for s in made:
        s.down()


@pytest.fixture(scope="session")
def stack(stack_session) -> Stack:
    """The session's main stack (started by the first test that calls stack.inv("up"))."""
    return stack_session("")


@pytest.fixture(autouse=True)
def logs_on_failure(request, stack_session):
    used = []
    request.node.stacks = used
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for s in used or []:
            print(f"\n==== compose logs of {s.project} ====\n{s.logs()}")


@pytest.fixture
def browser():
    return lambda stack: Browser(f"http://127.0.0.1:{stack.port}")


@pytest.fixture
def up(stack, request) -> Stack:
    """The main stack, up and healthy (`inv up` is idempotent)."""
    request.node.stacks.append(stack)
    stack.up()
    return stack

