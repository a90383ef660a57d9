"""Fixtures for real-engine image tests: the image is built ONCE per session (deploy.image.builder.build), every
container/network is labelled djdeploy.test=image, removed by a finalizer, and its logs are printed on failure."""

from __future__ import annotations

import secrets
import socket
import time
import uuid

import pytest

LABEL = {"djdeploy.test": "image"}
POSTGRES_IMAGE = "postgres:17-trixie"


def _failed(request):
    return any(getattr(getattr(request.node, "rep_" + w, None), "failed", False) for w in ("setup", "call"))


@pytest.fixture(scope="session")
def built_image(docker_client):
    """The app image as `inv build` makes it (CA bundle included for the builder stage when the host has one)."""
    from deploy.image import builder

    # stale leftovers of an interrupted earlier run, found by label
    for c in docker_client.containers.list(all=True, filters={"label": "djdeploy.test=image"}):
        c.remove(force=True)
    for n in docker_client.networks.list(filters={"label": "djdeploy.test=image"}):
        n.remove()
    return builder.build(quiet=True)


def secret_key():
    return secrets.token_urlsafe(50)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, fn, timeout=20.0, interval=0.05):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - keep polling until the deadline
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last!r})")


class App:
    """A running app container on a random loopback port."""

    def __init__(self, container, port):
        self.container = container
        self.port = port

    def logs(self):
        return self.container.logs().decode("utf-8", "replace")

    def wait_ready(self, timeout=20.0, host="localhost"):
        """Every worker loaded (see deploy.image.smoke.booted) and /health/ answers 200."""
        from deploy.image.smoke import booted, get

        def ready():
            self.container.reload()
            if self.container.status == "exited":
                raise AssertionError("container exited:\n" + self.logs()[-3000:])
            return booted(self.logs()) and get(self.port, "/health/", host=host, timeout=2)[0] == 200

        wait_for("the app to answer /health/", ready, timeout)
        return self


@pytest.fixture
def start(docker_client, built_image, request):
    """start(env=..., **run_kwargs) -> App. Everything started is removed at teardown; logs shown on failure."""
    started = []

    def _start(env=None, ready=True, image=None, **kw):
        environment = {"DATABASE_URL": "", "DJANGO_SECRET_KEY": secret_key(), "DJANGO_ALLOWED_HOSTS": "localhost"}
        environment.update(env or {})
        environment = {k: v for k, v in environment.items() if v is not None}
        port = free_port()
        kw.setdefault("ports", {"8000/tcp": ("127.0.0.1", port)})
        container = docker_client.containers.run(image or built_image.ref, detach=True, environment=environment,
                                                 labels=LABEL, **kw)
        app = App(container, port)
        started.append(app)
        return app.wait_ready() if ready else app

    yield _start
    from docker.errors import NotFound

    for app in started:
        try:
            if _failed(request):
                print(f"--- logs of {app.container.short_id} ---\n{app.logs()[-6000:]}")
            app.container.remove(force=True)
        except NotFound:  # the test removed it itself
            pass


@pytest.fixture
def network(docker_client):
    net = docker_client.networks.create(f"djimage-{uuid.uuid4().hex[:8]}", labels=LABEL)
    yield net
    net.reload()
    for c in net.containers:
        net.disconnect(c, force=True)
    net.remove()


@pytest.fixture
def postgres(docker_client, network, request):
    """A Postgres container on the test's own network: returns (name, user, password, db)."""
    from docker.errors import ImageNotFound

    try:
        docker_client.images.get(POSTGRES_IMAGE)
    except ImageNotFound:
        pytest.fail(f"{POSTGRES_IMAGE} is missing; run `inv lab.up` (it builds the stand-in)", pytrace=False)
    name = f"pg-{uuid.uuid4().hex[:8]}"
    password = "pw-" + secrets.token_hex(8)
    container = docker_client.containers.run(
        POSTGRES_IMAGE, detach=True, name=name, network=network.name, labels=LABEL,
        environment={"POSTGRES_USER": "app", "POSTGRES_PASSWORD": password, "POSTGRES_DB": "notes"})

    def healthy():
        container.reload()
        return container.attrs["State"].get("Health", {}).get("Status") == "healthy"

    try:
        wait_for("postgres to be healthy", healthy, timeout=90, interval=0.3)
        yield {"container": container, "host": name, "user": "app", "password": password, "db": "notes",
               "url": f"postgres://app:{password}@{name}:5432/notes"}
    finally:
        if _failed(request):
            print(f"--- postgres logs ---\n{container.logs().decode()[-3000:]}")
        container.remove(force=True, v=True)


def raw(port, request: bytes, timeout=5.0) -> bytes:
    """Send raw bytes, read until the server closes (or the timeout); the whole response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except socket.timeout:
            pass
    return data


def split(response: bytes):
    """(status, headers-text, body) of one raw HTTP response."""
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    return status, head.decode("latin-1"), body
