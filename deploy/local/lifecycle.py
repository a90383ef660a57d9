"""What `inv up` does, step by step: preflight, port check, image, `compose up`, bounded health wait.

Each step is a small function over a Runner (deploy.core.runner) and the validated StackSettings, so unit
tests drive them with MockContext and assert the exact commands and messages.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

from deploy.local import compose
from deploy.local.compose import APP, LAB_FIX, StackSettings
from deploy.core.errors import CommandFailed, EngineUnavailable, ToolkitError
from deploy.core.runner import Runner

HEALTH_PATH = "/health/?ready=1"
LOG_LINES = 30


class PortInUse(ToolkitError):
    pass


class StackUnhealthy(ToolkitError):
    pass


def quiet(runner: Runner) -> Runner:
    """The same runner without the echo, for probes (version checks, inspections); history is shared."""
    return Runner(ctx=runner.ctx, where=runner.where, secrets=runner.secrets, echo=False,
                  out=runner.out, history=runner.history)


def _first_line(outcome) -> str:
    text = (outcome.stderr or outcome.stdout or "").strip()
    return text.splitlines()[0][:200] if text else f"exit {outcome.exited}"


def preflight(runner: Runner) -> None:
    """The compose plugin and an engine answer; otherwise one line naming the fix."""
    probe = quiet(runner)
    found = probe.run(compose.compose_version_argv(), hide=True, check=False, timeout=30)
    if not found.ok:
        raise ToolkitError(f"`docker compose` (the Compose v2 CLI plugin) is not available ({_first_line(found)}); "
                           f"{LAB_FIX}")
    engine = probe.run(compose.engine_version_argv(), hide=True, check=False, timeout=30)
    if not engine.ok or not engine.stdout.strip():
        raise EngineUnavailable(f"no Docker engine answers ({_first_line(engine)}); {LAB_FIX}")


def containers(runner: Runner, s: StackSettings) -> list:
    return compose.parse_ps(quiet(runner).run(compose.ps_argv(s, as_json=True), hide=True, timeout=60).stdout)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if something already listens on host:port (a bind test, as the engine's port proxy would do)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        return False
    except OSError:
        return True
    finally:
        sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def check_port(s: StackSettings, running: list, in_use=None) -> None:
    """APP_PORT must be free, unless this project's own app container already publishes it."""
    in_use = in_use or port_in_use
    app = compose.by_service(running).get(APP)
    if app is not None and app.state == "running" and s.app_port in app.ports:
        return
    if in_use(s.app_port):
        raise PortInUse(f"port {s.app_port} on 127.0.0.1 is already in use; stop what listens there, or set "
                        f"APP_PORT to a free port in .env or the environment (e.g. APP_PORT={free_port()})")


def check_postgres_image(runner: Runner, s: StackSettings) -> None:
    if not quiet(runner).run(compose.image_id_argv(s.postgres_image), hide=True, check=False, timeout=30).ok:
        raise ToolkitError(f"the Postgres image {s.postgres_image} is not on this engine and cannot be pulled here; "
                           "load it or set POSTGRES_IMAGE to an image you have (or, for this repository's test lab, run "
                           "`inv lab.up`: it builds the stand-in)")


def start(runner: Runner, s: StackSettings, image_ref: str, timeout: float, clock: "Clock | None" = None) -> None:
    """`compose up --detach` (compose itself waits for the database's health check), then the health wait."""
    clock = clock or Clock()
    deadline = clock.now() + timeout
    try:
        runner.run(compose.up_argv(s, image_ref), timeout=timeout)
    except CommandFailed as exc:
        what = (f"the stack did not start within {timeout:g}s" if exc.timed_out
                else f"`docker compose up` failed: {_last_line(exc.output_tail)}")
        raise unhealthy(runner, s, what) from None
    wait_healthy(runner, s, deadline, clock=clock)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def probe_health(url: str, timeout: float = 2.0) -> bool:
    """One GET of the readiness endpoint (also checks the database): True on HTTP 200.

    Direct, never through an http_proxy from the environment: the app listens on this machine's loopback.
    """
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:  # noqa: S310 - loopback URL we built
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass
class Clock:
    """Time and sleep, replaceable in unit tests."""

    now: object = time.monotonic
    sleep: object = time.sleep


def wait_healthy(runner: Runner, s: StackSettings, deadline: float, probe=None, clock: Clock | None = None,
                 every: float = 0.25, check_every: float = 2.0) -> None:
    """Poll the health endpoint until it answers 200 or ``deadline``; fail early when a container died."""
    probe = probe or probe_health
    clock = clock or Clock()
    url = s.url.rstrip("/") + HEALTH_PATH
    next_check = clock.now() + check_every
    while True:
        if probe(url):
            return
        now = clock.now()
        if now >= deadline:
            raise unhealthy(runner, s, f"{url} did not answer 200 in time", service=APP)
        if now >= next_check:
            next_check = now + check_every
            failed = [c for c in compose.by_service(containers(runner, s)).values() if c.failed]
            if failed:
                c = failed[0]
                raise unhealthy(runner, s, describe(c), service=c.service)
        clock.sleep(min(every, max(0.0, deadline - now)))


def describe(c) -> str:
    if c.state == "exited":
        return f"its container exited with code {c.exit_code}"
    if c.state in ("restarting", "dead"):
        return f"its container is {c.state} (it keeps failing)"
    return f"its health check reports {c.health or c.state}"


def unhealthy(runner: Runner, s: StackSettings, what: str, service: str | None = None) -> StackUnhealthy:
    """The error for a stack that did not come up: names the failing service and shows its last log lines."""
    if service is None:
        try:
            service = compose.failing_service(containers(runner, s))
        except (CommandFailed, ValueError):
            service = APP
    logs = quiet(runner).run(compose.logs_argv(s, service, tail=LOG_LINES), hide=True, check=False, timeout=60)
    text = "\n".join((logs.stdout + logs.stderr).rstrip().splitlines()[-LOG_LINES:]) or "(no log output)"
    return StackUnhealthy(f"service {service} is not healthy: {what}. Last log lines of {service}:\n"
                          f"{text}\n(see all with: inv logs {service})")
