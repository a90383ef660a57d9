"""Lab fixtures for the ship tests: a unique stack on the lab manager, its env file, real app images, and its own
ACME CA (a Pebble + challtestsrv of this session, validating HTTP-01 on the stack's HTTP port, 120-second
certificates so that renewals happen during the tests). The stack serves https://djlab.test:<https port>;
clients reach it on 127.0.0.1 with SNI/Host djlab.test and trust the session CA's root.

Everything created carries the stack name (djtest<hex>) or the label djdeploy.test=ship and is removed
in finalizers: the stack, its secrets, configs, volumes and networks, the remote dir, local image tags, the CA.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import socket
import ssl
import subprocess
import sys
import time
import http.client
import urllib.error
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
            return f"the lab {what} does not answer on 127.0.0.1:{port} (run `inv lab.up`)"
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
    for volume in ("pgdata", "certs", "sockets"):
        docker("volume", "rm", f"{stack}_{volume}", check=False)
    subprocess.run(["rm", "-rf", f"/var/lib/djdeploy/{stack}"], check=False)


def remove_pushed_images(image: str) -> None:
    """This engine's tags of ``image`` under the lab registry's name (what a deploy pushed from here)."""
    from deploy.lab import paths

    for ref in docker("images", "--format", "{{.Repository}}:{{.Tag}}", f"{paths.REGISTRY}/{image}",
                      check=False).stdout.split():
        docker("rmi", ref, check=False)


def dump_logs(stack: str) -> None:
    for svc in ("app", "proxy", "certs", "db"):
        out = docker("service", "ps", "--no-trunc", f"{stack}_{svc}", check=False)
        print(f"--- docker service ps {stack}_{svc}\n{out.stdout}{out.stderr}")
        try:  # `docker service logs` of engine 20.10 sometimes hangs: bounded
            out = docker("service", "logs", "--tail", "60", f"{stack}_{svc}", check=False, timeout=30)
            print(f"--- logs {stack}_{svc}\n{out.stdout[-6000:]}{out.stderr[-3000:]}")
        except subprocess.TimeoutExpired:
            print(f"--- logs {stack}_{svc}: docker service logs did not finish within 30s")


HOST = "djlab.test"   # the lab deploy's host name (deploy.lab.deploy_env.HOST_NAME)


def pty_shell(env_dir, env: str, line: str, *expected: str) -> tuple:
    """`inv shell --env ENV` under a pseudo-terminal (pexpect): type ``line``, expect each of ``expected``, then
    `exit 3`; return (exit status, what the shell printed after the last expectation)."""
    import pexpect

    child = pexpect.spawn("python3", ["-m", "invoke", "shell", "--env", env], cwd=str(ROOT), timeout=120,
                          env={**os.environ, "DJDEPLOY_ENV_DIR": str(env_dir)}, encoding="utf-8")
    try:
        child.sendline(line)
        for text in expected:
            child.expect(text)
        child.sendline("exit 3")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    return child.exitstatus, child.before or ""


def local_runner():
    from invoke import Context

    from deploy.core.runner import Runner

    return Runner(ctx=Context(), echo=False)


class Env:
    """One lab deploy environment for this test session (HTTPS with certificates from its own Pebble)."""

    def __init__(self, tmp: Path, validity: int = 120):
        from deploy.lab import acme, acme_env

        self.stack = "djtest" + secrets.token_hex(3)
        self.port, self.https_port = free_port(), free_port()
        self.dir = tmp
        self.key_file = tmp / "django_secret_key"
        self.key_file.write_text(secrets.token_urlsafe(50))
        self.key_file.chmod(0o600)
        self.acme = acme.AcmeSpec(prefix=self.stack, labels=(("djdeploy.test", "ship"),), http_port=self.port,
                                  validity=validity)
        self.ca_record = acme.ensure(local_runner(), self.acme, say=lambda line: None)
        self.tls = acme_env.connect(local_runner(), self.acme, tmp / "acme")
        self.ca_root = (tmp / "acme" / "ca-root.pem").read_text()
        self.extra = {"DJANGO_SECRET_KEY_FILE": str(self.key_file), "CONVERGE_TIMEOUT": "180"}
        self.write()
        self.tags: list[str] = []

    def write(self, **extra) -> None:
        from deploy.lab import deploy_env

        self.extra.update(extra)
        deploy_env.write_lab_env(self.dir, name="lab", stack=self.stack, port=self.port, https_port=self.https_port,
                                 tls=self.tls, extra=self.extra)

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.ca_root)

    def remove_ca(self) -> None:
        from deploy.lab import acme, acme_env

        for name in (self.acme.pebble, self.acme.challtestsrv):
            out = docker("logs", "--tail", "30", name, check=False)
            print(f"--- logs {name}\n{out.stdout[-3000:]}{out.stderr[-3000:]}")
        acme_env.disconnect(local_runner(), self.acme)
        acme.remove(local_runner(), self.acme)

    def cfg(self):
        from deploy.ship import config

        return config.load("lab", env_dir=self.dir, environ={})

    def tag(self, name: str) -> str:
        tag = f"{self.stack}-{name}"
        self.tags.append(tag)
        return tag

    def inv(self, *args, timeout=300, **environ):
        """`inv ARGS` against this environment (stdin not a terminal); ``environ`` adds variables."""
        env = dict(os.environ, DJDEPLOY_ENV_DIR=str(self.dir), **environ)
        return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def env(lab, tmp_path_factory, request):
    e = Env(tmp_path_factory.mktemp("shipenv"))
    try:
        yield e
        if request.session.testsfailed:
            dump_logs(e.stack)
    finally:
        remove_stack(e.stack)
        e.remove_ca()
    from deploy.lab import paths

    for tag in e.tags + [t + "-static" for t in e.tags]:   # -static: a rollback's image (deploy.image.bridge)
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


class LoopbackHTTPS(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 whatever the URL's host; SNI and certificate verification use the URL's host."""

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class _Handler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(LoopbackHTTPS, req, context=self._context)


class Site:
    """A browser-like client of the deployed app at https://djlab.test:<https port>/, connecting to 127.0.0.1 and
    verifying the certificate against the session CA's root. Cookies are carried by hand."""

    def __init__(self, env):
        if env.tls is None:  # a plain-HTTP environment (TLS_MODE=external, no TLS in the lab): tests/ops
            self.base = f"http://127.0.0.1:{env.port}"
            self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            return
        self.base = f"https://{HOST}:{env.https_port}"
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _Handler(context=env.tls_context()))

    def get(self, path="/", headers=None):
        with self.opener.open(urllib.request.Request(self.base + path, headers=headers or {}), timeout=10) as resp:
            return resp.status, resp.headers.get("X-App-Version"), resp.read().decode()

    def post_note(self, text: str, headers: dict | None = None) -> int:
        """POST a note with a valid CSRF cookie and token; ``headers`` replace the browser's Origin (HTTP status)."""
        with self.opener.open(self.base + "/", timeout=10) as resp:
            page = resp.read().decode()
            cookie = re.search(r"csrftoken=([^;]+)", resp.headers.get("Set-Cookie", "")).group(1)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        body = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "text": text}).encode()
        sent = {"Cookie": f"csrftoken={cookie}", "Origin": self.base} if headers is None else \
            {"Cookie": f"csrftoken={cookie}", **headers}
        try:
            with self.opener.open(urllib.request.Request(self.base + "/", data=body, headers=sent), timeout=10) as resp:
                return resp.status  # 200 after following the redirect to /
        except urllib.error.HTTPError as exc:
            return exc.code

    def add_note(self, text: str) -> None:
        assert self.post_note(text) == 200
        assert text in self.get("/")[2]

    def admin_login(self, username: str, password: str) -> str:
        """POST the admin login form (with its CSRF token); return the page it answers with."""
        with self.opener.open(self.base + "/admin/login/", timeout=10) as resp:
            page = resp.read().decode()
            cookie = re.search(r"csrftoken=([^;]+)", resp.headers.get("Set-Cookie", "")).group(1)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        body = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "username": username, "password": password,
                                       "next": "/admin/"}).encode()
        req = urllib.request.Request(self.base + "/admin/login/", data=body,
                                     headers={"Cookie": f"csrftoken={cookie}", "Origin": self.base})
        with self.opener.open(req, timeout=10) as resp:
            assert resp.status == 200, resp.status
            return resp.read().decode()

    def notes(self) -> str:
        return self.get("/")[2]
