"""Lab fixtures for app settings, an external Postgres and uploads on S3: one stack per session.

The session creates (all named djupl<hex>..., labelled djdeploy.test=uploads, removed in the finalizer):
an attachable overlay the stack uses (NETWORK), a Postgres container on it (alias extpg: DATABASE=external),
an S3 server (deploy.lab.s3 with the session's prefix, attached as s3), the stack, its secrets, the remote dir
and the local image tags. A failing session prints the services' logs.
"""

from __future__ import annotations

import io
import os
import secrets
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LABEL = "djdeploy.test=uploads"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PNG_BYTES = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"     # a 1x1 PNG
                          "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def docker(*args, check=True, timeout=120):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


def lab_problem() -> str | None:
    from deploy.lab import paths

    if not paths.KNOWN_HOSTS.exists():
        return f"{paths.KNOWN_HOSTS} missing (run `inv lab.up`)"
    for port, what in ((paths.SSH_PORT, "sshd"), (paths.REGISTRY_PORT, "registry")):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except OSError:
            return f"the lab {what} does not answer on 127.0.0.1:{port} (run `inv lab.up`)"
    for image in ("djdeploy-lab/moto-s3:5.1", "postgres:17-trixie"):
        if docker("image", "inspect", image, check=False).returncode:
            return f"the lab stand-in {image} is missing (run `inv lab.up`)"
    return None


def secret_file(path: Path, value: str) -> Path:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def wait_for(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {seconds:g}s waiting for {what}")


class Env:
    """The session's deploy environment: deploy/lab.env in a temp dir, with the external database, the app's
    own variable and secret, and the S3 keys."""

    def __init__(self, tmp: Path):
        from deploy.lab import s3

        self.stack = "djupl" + secrets.token_hex(3)
        self.port, self.dir, self.tags = free_port(), tmp, []
        self.network, self.pg = f"{self.stack}-net", f"{self.stack}-extpg"
        self.s3 = s3.S3Spec(prefix=self.stack, labels=(("djdeploy.test", "uploads"),))
        self.pg_password = secrets.token_urlsafe(24)
        self.variable = "check-" + secrets.token_hex(8)          # APP_ENV_UPLOADS_CHECK
        self.token = secret_file(tmp / "token", "token-" + secrets.token_urlsafe(30))   # APP_SECRET_UPLOADS_TOKEN
        url = f"postgres://app:{self.pg_password}@extpg:5432/app"
        self.extra = {"DJANGO_SECRET_KEY_FILE": str(secret_file(tmp / "key", secrets.token_urlsafe(50))),
                      "CONVERGE_TIMEOUT": "180", "DATABASE": "external", "NETWORK": self.network,
                      "DATABASE_URL_FILE": str(secret_file(tmp / "database_url", url)),
                      "APP_ENV_DJANGO_TEST_ENDPOINTS": "on", "APP_ENV_UPLOADS_CHECK": self.variable,
                      "APP_SECRET_UPLOADS_TOKEN_FILE": str(self.token)}
        self.write()

    def write(self, **extra) -> None:
        from deploy.lab import deploy_env

        self.extra.update(extra)
        text = deploy_env.lab_env_text(stack=self.stack, port=self.port, extra=self.extra)
        # DATABASE=external: the stack has no Postgres, so no POSTGRES_PASSWORD
        text = "".join(line for line in text.splitlines(True) if not line.startswith("POSTGRES_PASSWORD"))
        (self.dir / "lab.env").write_text(text)

    def cfg(self):
        from deploy.ship import config

        return config.load("lab", env_dir=self.dir, environ={})

    def tag(self, name: str) -> str:
        self.tags.append(f"{self.stack}-{name}")
        return self.tags[-1]


def start_store(spec, network: str, bucket: str) -> str:
    """The lab S3 server ``spec`` (deploy.lab.s3.S3Spec) with ``bucket``, attached to ``network`` as ``s3`` (the app
    reaches it at http://s3:5000); returns its endpoint from this host (http://127.0.0.1:<published port>)."""
    from invoke import Context

    from deploy.core.runner import Runner
    from deploy.lab import s3

    runner = Runner(ctx=Context(), echo=False)
    record = s3.ensure(runner, spec, bucket=bucket, say=lambda m: None)
    runner.run(s3.connect_argv(spec, network), hide=True)
    return record["endpoint"]


def start_dependencies(env: Env) -> None:
    """The overlay (attachable, for this stack alone), the external Postgres and the S3 server on it."""
    from deploy.lab import deploy_env

    docker("network", "create", "--driver", "overlay", "--attachable", "--label", LABEL, env.network)
    pg_env = secret_file(env.dir / "pg.env", f"POSTGRES_USER=app\nPOSTGRES_DB=app\nPOSTGRES_PASSWORD={env.pg_password}")
    docker("run", "--detach", "--name", env.pg, "--label", LABEL, "--network", env.network, "--network-alias", "extpg",
           "--env-file", str(pg_env), "postgres:17-trixie")
    env.s3_endpoint = start_store(env.s3, env.network, "uploads")
    env.write(**deploy_env.s3_keys("uploads"))
    wait_for(lambda: docker("exec", env.pg, "pg_isready", "-q", "-h", "127.0.0.1", "-U", "app", check=False)
             .returncode == 0, 60, "the external Postgres")


def dump_logs(env: Env) -> None:
    for svc in ("app", "proxy"):
        out = docker("service", "ps", "--no-trunc", f"{env.stack}_{svc}", check=False)
        print(f"--- docker service ps {env.stack}_{svc}\n{out.stdout}{out.stderr}")
        try:
            out = docker("service", "logs", "--tail", "60", f"{env.stack}_{svc}", check=False, timeout=30)
            print(f"--- logs {env.stack}_{svc}\n{out.stdout[-6000:]}{out.stderr[-3000:]}")
        except subprocess.TimeoutExpired:
            print(f"--- logs {env.stack}_{svc}: docker service logs did not finish within 30s")
    for name in (env.pg, env.s3.container):
        out = docker("logs", "--tail", "30", name, check=False)
        print(f"--- logs {name}\n{out.stdout[-3000:]}{out.stderr[-3000:]}")


def remove_all(env: Env) -> None:
    """The stack (shiphelpers.remove_stack: its tasks, secrets, configs, volumes, remote dir), then what the session
    added: the external Postgres, the media volume, the S3 server, the overlay and the image tags."""
    import sys

    from invoke import Context

    from deploy.core.runner import Runner
    from deploy.lab import paths, s3

    sys.path.insert(0, str(ROOT / "tests" / "ship"))
    from shiphelpers import remove_stack

    remove_stack(env.stack)
    docker("rm", "-f", env.pg, check=False)
    docker("volume", "rm", f"{env.stack}_media", check=False)
    s3.remove(Runner(ctx=Context(), echo=False), env.s3)
    docker("network", "rm", env.network, check=False)
    for tag in env.tags:
        for ref in (f"djapp:{tag}", f"{paths.REGISTRY}/djapp:{tag}"):
            docker("rmi", ref, check=False)


@pytest.fixture(scope="session")
def env(tmp_path_factory, request):
    problem = lab_problem()
    if problem:
        if IN_CI:
            pytest.fail(f"CI=true and this test needs the lab: {problem}", pytrace=False)
        pytest.skip(f"needs the lab: {problem}")
    e = Env(tmp_path_factory.mktemp("uploadsenv"))
    saved = os.environ.get("IMAGE_EXTRAS")
    os.environ["IMAGE_EXTRAS"] = "s3"   # the deploy's build: django-storages + boto3 (requirements-s3.lock)
    try:
        start_dependencies(e)
        yield e
        if request.session.testsfailed:
            dump_logs(e)
    finally:
        if saved is None:
            os.environ.pop("IMAGE_EXTRAS", None)
        else:
            os.environ["IMAGE_EXTRAS"] = saved
        remove_all(e)


class Site:
    """HTTP on 127.0.0.1:<port> through the stack's proxy; the answering container in X-Served-By."""

    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def get(self, path: str):
        with self.opener.open(urllib.request.Request(self.base + path, headers={"Connection": "close"}),
                              timeout=10) as resp:
            return resp.status, resp.headers, resp.read()

    def upload(self, name: str, data: bytes) -> tuple[str, str]:
        """POST a file as multipart/form-data; return (stored name, the container that stored it)."""
        boundary = "djdeploy" + secrets.token_hex(8)
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
                f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
        req = urllib.request.Request(self.base + "/test/upload/", data=body, headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}", "Connection": "close"})
        with self.opener.open(req, timeout=20) as resp:
            assert resp.status == 201, resp.status
            return resp.read().decode(), resp.headers["X-Served-By"]


def deploy(env: Env, tag: str, build: bool = True, action: str = "deploy"):
    """Run a deploy (or rollback) with the session's config; return (outcome, everything it printed)."""
    from deploy.ship import executor

    out = io.StringIO()
    cfg = env.cfg()
    if action == "rollback":
        outcome = executor.rollback(cfg, out=out)
    else:
        outcome = executor.deploy(cfg, tag=tag, build=build, out=out)
    print(out.getvalue())
    return outcome, out.getvalue()
