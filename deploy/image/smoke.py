"""`inv smoke`: run an app image without a database on a loopback port and prove that it serves.

The checks are pure functions over (status, headers, body) so unit tests cover every verdict; ``run`` is the one
function that starts a container (through the Docker SDK), and it always removes it.
"""

from __future__ import annotations

import email.utils
import re
import secrets
import socket
import sys
import time
from datetime import datetime, timedelta, timezone

from deploy.core.errors import ToolkitError

LABEL = "djdeploy.smoke"
ALLOWED = "localhost,127.0.0.1"
FOREIGN_HOST = "evil.example.com"
SPAWNED, LOADED = "spawned uWSGI worker ", "WSGI app 0 (mountpoint='') ready"
STATIC_RE = re.compile(r'/static/[\w./-]+\.[0-9a-f]{12}\.(?:css|js)')
YEAR = timedelta(days=365)


class SmokeFailed(ToolkitError):
    def __init__(self, check: str, detail: str):
        self.check = check
        super().__init__(f"smoke check '{check}' failed: {detail}")


def environment(secret_key: str) -> dict:
    """The container's environment: the seed's run (empty DATABASE_URL) plus the two required settings."""
    return {"DATABASE_URL": "", "DJANGO_SECRET_KEY": secret_key, "DJANGO_ALLOWED_HOSTS": ALLOWED}


def booted(logs: str) -> bool:
    """uWSGI's HTTP router is up and EVERY worker has loaded the app (lazy-apps loads after fork).

    Waiting for all of them matters: uWSGI 2.0.30's graceful shutdown blocks forever on a worker that is still
    loading when SIGTERM arrives (docker then SIGKILLs it after the grace period, exit 137)."""
    spawned = logs.count(SPAWNED)
    return "spawned uWSGI http" in logs and spawned > 0 and logs.count(LOADED) >= spawned


def check_page(status, headers, body, path="/", text=""):
    if status != 200 or text.encode() not in body:
        expected = f"200 containing {text!r}" if text else "200"
        raise SmokeFailed("page answers", f"GET {path} gave {status}, expected {expected} (SMOKE_PATH, SMOKE_TEXT)")


def check_foreign_host(status, headers, body):
    if status != 400 or body:
        raise SmokeFailed("foreign host rejected",
                          f"Host: {FOREIGN_HOST} gave {status} with {len(body)} body bytes, expected 400 and no body")


def static_url(html: bytes) -> str:
    match = STATIC_RE.search(html.decode("utf-8", "replace"))
    if not match:
        raise SmokeFailed("hashed static files", "the page links no hashed /static/ file (ManifestStaticFilesStorage?)")
    return match.group(0)


def check_static(status, headers, body, now=None):
    now = now or datetime.now(timezone.utc)
    if status != 200 or not body:
        raise SmokeFailed("hashed static files", f"static file gave {status}, expected 200")
    expires = headers.get("Expires")
    when = email.utils.parsedate_to_datetime(expires) if expires else None
    if when is None or when < now + YEAR - timedelta(minutes=5):
        raise SmokeFailed("hashed static files", f"Expires is {expires!r}, expected at least a year ahead")


def check_health(status, headers, body):
    if status != 200 or body != b"ok":
        raise SmokeFailed("health endpoint", f"GET /health/ gave {status} {body[:40]!r}, expected 200 'ok'")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port, path, host="localhost", timeout=5.0):
    """(status, headers, body) of GET http://127.0.0.1:port/path with an explicit Host header."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest("GET", path, skip_host=True)
        conn.putheader("Host", host)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def _poll(what, fn, deadline):
    last = None
    while time.monotonic() < deadline:
        try:
            result = fn()
            if result:
                return result
        except OSError as exc:
            if _is_sdk_error(exc):  # the engine, not the app: reported by engine.sdk_errors at once
                raise
            last = exc
        time.sleep(0.05)
    raise SmokeFailed(what, f"no success before the deadline ({last or 'condition not met'})")


def _is_sdk_error(exc: OSError) -> bool:
    import requests

    return isinstance(exc, requests.exceptions.RequestException)


def run(image_ref: str, out=None, boot_timeout: float = 30.0, page_path: str = "/", page_text: str = "") -> dict:
    """Run every check against ``image_ref``; return timings. Raises SmokeFailed naming the failed check, and a
    one-line ToolkitError for a Docker SDK error (naming the step). The container is always removed."""
    from docker.errors import ImageNotFound

    from deploy.core import engine

    out = out or sys.stdout
    cli = engine.client()
    try:
        with engine.sdk_errors(f"smoke test of {image_ref}: looking up the image", "check the engine (`docker info`)"):
            try:
                cli.images.get(image_ref)
            except ImageNotFound:
                raise ToolkitError(f"image {image_ref} not found; build it with `inv build` or pass --image") from None
        port = free_port()
        with engine.sdk_errors(f"smoke test of {image_ref}: starting the container",
                               f"check the engine (`docker info`) and that 127.0.0.1:{port} is free, then rerun"):
            container = cli.containers.run(image_ref, detach=True, environment=environment(secrets.token_urlsafe(50)),
                                           ports={"8000/tcp": ("127.0.0.1", port)}, labels={LABEL: "1"})
        try:
            with engine.sdk_errors(f"smoke test of {image_ref}: checking the container",
                                   "check the engine (`docker info`) and rerun `inv smoke`"):
                return _checks(container, port, out, boot_timeout, page_path, page_text)
        finally:
            _remove(container, out)
    finally:
        cli.close()


def _checks(container, port: int, out, boot_timeout: float, page_path: str, page_text: str) -> dict:
    say = lambda line: (out.write(line + "\n"), out.flush())  # noqa: E731
    started, timings = time.monotonic(), {}
    deadline = started + boot_timeout
    try:
        def up():
            container.reload()
            if container.status == "exited":
                raise SmokeFailed("uwsgi booted", "the container exited: " + _tail(container))
            return booted(container.logs().decode("utf-8", "replace"))

        _poll("uwsgi booted", up, deadline)
        say("ok   uwsgi booted")
        _poll("first answer", lambda: get(port, "/health/")[0] == 200, deadline)
        timings["first_answer"] = time.monotonic() - started
        say(f"ok   first answer after {timings['first_answer']:.2f}s")
        page = get(port, page_path)
        check_page(*page, path=page_path, text=page_text)
        say("ok   page answers")
        check_foreign_host(*get(port, "/", host=FOREIGN_HOST))
        say("ok   foreign host rejected (400, empty body)")
        check_static(*get(port, static_url(page[2])))
        say("ok   hashed static files (200, expires a year ahead)")
        check_health(*get(port, "/health/"))
        say("ok   health endpoint")
        timings["stop"] = _stop(container)
        say(f"ok   clean stop in {timings['stop']:.2f}s (exit 0)")
    except SmokeFailed:
        say(_tail(container, 20))
        raise
    return timings


def _stop(container) -> float:
    t0 = time.monotonic()
    container.stop(timeout=10)
    seconds = time.monotonic() - t0
    code = container.wait(timeout=5)["StatusCode"]
    if code != 0:
        raise SmokeFailed("clean stop", f"exit code {code} after docker stop, expected 0")
    return seconds


def _remove(container, out) -> None:
    """Always remove the smoke container; if that fails, say how to remove it (it carries the smoke label)."""
    from docker.errors import DockerException

    try:
        container.remove(force=True)
    except (DockerException, OSError) as exc:
        out.write(f"warning: could not remove the smoke container {container.id[:12]} ({str(exc).splitlines()[0]}); "
                  f"remove it with `docker rm -f {container.id[:12]}`\n")


def _tail(container, lines=5) -> str:
    try:
        return container.logs(tail=lines).decode("utf-8", "replace").strip()
    except Exception:  # the container may already be gone
        return "(no logs)"
