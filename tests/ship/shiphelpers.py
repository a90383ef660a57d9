"""Lab fixtures for the ship tests: a unique stack on the lab manager, its env file, real app images.

Everything created carries the stack name (djtest<hex>) or the label djdeploy.test=ship and is removed
in finalizers: the stack, its secrets, configs, volume and network, the remote dir, local image tags.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
LABEL = "djdeploy.test=ship"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_problem() -> str | None:
    from deploy.lab import paths

    if not paths.KNOWN_HOSTS.exists():
        return f"{paths.KNOWN_HOSTS} missing (run `inv lab.up --deploy`)"
    for port, what in ((paths.SSH_PORT, "sshd"), (paths.REGISTRY_PORT, "registry")):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except OSError:
            return f"the lab {what} does not answer on 127.0.0.1:{port} (run `inv lab.up --deploy`)"
    return None


@pytest.fixture(scope="session")
def lab():
    problem = lab_problem()
    if problem:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and this test needs the lab: {problem}", pytrace=False)
        pytest.skip(f"needs the lab: {problem}")


def docker(*args, check=True, timeout=120):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


def remove_stack(stack: str) -> None:
    docker("stack", "rm", stack, check=False)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        left = docker("ps", "-aq", "--filter", f"label=com.docker.stack.namespace={stack}", check=False).stdout.split()
        nets = docker("network", "ls", "-q", "--filter", f"name={stack}_", check=False).stdout.split()
        if not left and not nets:
            break
        time.sleep(0.5)
    for kind in ("secret", "config"):
        ids = docker(kind, "ls", "-q", "--filter", f"label=com.docker.stack.namespace={stack}", check=False).stdout.split()
        ids += docker(kind, "ls", "-q", "--filter", f"name={stack}_", check=False).stdout.split()
        if ids:
            docker(kind, "rm", *sorted(set(ids)), check=False)
    for c in docker("ps", "-aq", "--filter", f"label=djdeploy.stack={stack}", check=False).stdout.split():
        docker("rm", "-f", c, check=False)
    docker("volume", "rm", f"{stack}_pgdata", check=False)
    subprocess.run(["rm", "-rf", f"/var/lib/djdeploy/{stack}"], check=False)


def dump_logs(stack: str) -> None:
    for svc in ("app", "proxy", "db"):
        out = docker("service", "ps", "--no-trunc", f"{stack}_{svc}", check=False)
        print(f"--- docker service ps {stack}_{svc}\n{out.stdout}{out.stderr}")
        try:  # `docker service logs` of engine 20.10 sometimes hangs: bounded
            out = docker("service", "logs", "--tail", "60", f"{stack}_{svc}", check=False, timeout=30)
            print(f"--- logs {stack}_{svc}\n{out.stdout[-6000:]}{out.stderr[-3000:]}")
        except subprocess.TimeoutExpired:
            print(f"--- logs {stack}_{svc}: docker service logs did not finish within 30s")


class Env:
    """One lab deploy environment for this test session."""

    def __init__(self, tmp: Path):
        self.stack = "djtest" + secrets.token_hex(3)
        self.port = free_port()
        self.dir = tmp
        self.key_file = tmp / "django_secret_key"
        self.key_file.write_text(secrets.token_urlsafe(50))
        self.key_file.chmod(0o600)
        self.extra = {"DJANGO_SECRET_KEY_FILE": str(self.key_file), "CONVERGE_TIMEOUT": "180"}
        self.write()
        self.tags: list[str] = []

    def write(self, **extra) -> None:
        from deploy.lab import deploy_env

        self.extra.update(extra)
        deploy_env.write_lab_env(self.dir, name="lab", stack=self.stack, port=self.port, extra=self.extra)

    def cfg(self):
        from deploy.ship import config

        return config.load("lab", env_dir=self.dir, environ={})

    def tag(self, name: str) -> str:
        tag = f"{self.stack}-{name}"
        self.tags.append(tag)
        return tag

    def inv(self, *args, timeout=300):
        env = dict(os.environ, DJDEPLOY_ENV_DIR=str(self.dir))
        return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=timeout)


@pytest.fixture(scope="session")
def env(lab, tmp_path_factory, request):
    e = Env(tmp_path_factory.mktemp("shipenv"))
    try:
        yield e
        if request.session.testsfailed:
            dump_logs(e.stack)
    finally:
        remove_stack(e.stack)
    from deploy.lab import paths

    for tag in e.tags:
        for ref in (f"djapp:{tag}", f"{paths.REGISTRY}/djapp:{tag}"):
            docker("rmi", ref, check=False)


def build_derived(base: str, tag: str, dockerfile: str, files: dict | None = None) -> str:
    """Build FROM ``base`` with extra lines (labelled for the test); return the local ref."""
    import tarfile

    from deploy.core.engine import client

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name, text in {"Dockerfile": f"FROM {base}\nLABEL {LABEL}\n{dockerfile}\n", **(files or {})}.items():
            raw = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    data.seek(0)
    cli = client()
    try:
        cli.images.build(fileobj=data, custom_context=True, tag=f"djapp:{tag}", rm=True, forcerm=True)
    finally:
        cli.close()
    return f"djapp:{tag}"


class Site:
    """A browser-like client of the deployed app on 127.0.0.1:<port>. The app's CSRF cookie is marked
    Secure (production settings), so it is carried by hand over this plain-HTTP loopback test."""

    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path="/", headers=None):
        req = urllib.request.Request(self.base + path, headers=headers or {})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get("X-App-Version"), resp.read().decode()

    def add_note(self, text: str) -> None:
        with urllib.request.urlopen(self.base + "/", timeout=10) as resp:
            page = resp.read().decode()
            cookie = re.search(r"csrftoken=([^;]+)", resp.headers.get("Set-Cookie", "")).group(1)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        body = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "text": text}).encode()
        req = urllib.request.Request(self.base + "/", data=body, headers={"Cookie": f"csrftoken={cookie}"})
        with urllib.request.urlopen(req, timeout=10) as resp:  # follows the redirect to /
            assert resp.status == 200, resp.status
        assert text in self.get("/")[2]

    def admin_login(self, username: str, password: str) -> str:
        """POST the admin login form (with its CSRF token); return the page it answers with."""
        with urllib.request.urlopen(self.base + "/admin/login/", timeout=10) as resp:
            page = resp.read().decode()
            cookie = re.search(r"csrftoken=([^;]+)", resp.headers.get("Set-Cookie", "")).group(1)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        body = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "username": username, "password": password,
                                       "next": "/admin/"}).encode()
        req = urllib.request.Request(self.base + "/admin/login/", data=body, headers={"Cookie": f"csrftoken={cookie}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200, resp.status
            return resp.read().decode()

    def notes(self) -> str:
        return self.get("/")[2]
