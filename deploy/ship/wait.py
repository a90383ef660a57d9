"""The polls of a deploy: each is ONE plan step (deploy.ship.plan) that polls quietly until its deadline
and returns how many times it polled (recorded with the step's duration). Every wait has a deadline and
says what timed out.

Convergence is read from each service's UpdateStatus, because `docker stack deploy` exits 0 even
when Swarm later rolls the update back.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request

from deploy.ship import swarm
from deploy.core.errors import ToolkitError
from deploy.core.runner import Runner

POLL = 0.5
HEALTH_POLL = 0.2
HEALTH_TIMEOUT = 60.0
HEALTH_STREAK = 3


def quiet(run: Runner) -> Runner:
    """The same connection, not echoing: a poll is printed once, as its step."""
    return Runner(ctx=run.ctx, where=run.where, secrets=run.secrets, echo=False, out=run.out)


def update(cfg, run: Runner, name: str, prior: tuple, image: str) -> int:
    """Poll until the update that started after ``prior`` (state, started-at) ends; return the poll count."""
    svc, cmd = swarm.service(cfg, name), swarm.update_status_cmd(cfg, name)
    ask, deadline, last, reason, polls = quiet(run), time.monotonic() + cfg.converge_timeout, "", "", 0
    while time.monotonic() < deadline:
        polls += 1
        res = ask.run(cmd, hide=True, check=False, timeout=30)
        state, started = swarm.parse_update_status(res.stdout)
        if res.ok and state and (state, started) != tuple(prior):
            if state != last:
                message = ask.run(swarm.update_message_cmd(cfg, name), hide=True, check=False, timeout=30).stdout.strip()
                run.out.write(f"  {svc}: {state} ({message})\n")
                reason = message if state in ("rollback_started", "paused") else reason
                last = state
            if state in swarm.TERMINAL:
                _terminal(cfg, svc, state, reason or message, image)
                return polls
        time.sleep(POLL)
    raise ToolkitError(f"timed out after {cfg.converge_timeout:g}s waiting for {svc} to finish its update "
                       f"(last state: {last or 'not started'}); check `inv status --env {cfg.env}`")


def _terminal(cfg, svc: str, state: str, message: str, image: str) -> None:
    if state == "completed":
        return
    if state == "rollback_completed":
        raise ToolkitError(f"release {image} failed on {svc} ({message}); Swarm rolled it "
                           f"back automatically and the previous version keeps serving")
    raise ToolkitError(f"update of {svc} is {state} ({message}); check `inv status --env {cfg.env}` "
                       f"and `inv logs --env {cfg.env}`")


def running(cfg, run: Runner, name: str, replicas: int) -> int:
    """Poll until ``name`` runs ``replicas`` tasks; return the poll count."""
    svc, cmd = swarm.service(cfg, name), swarm.running_cmd(cfg, name)
    ask, deadline, errors, polls = quiet(run), time.monotonic() + cfg.converge_timeout, [], 0
    while time.monotonic() < deadline:
        polls += 1
        res = ask.run(cmd, hide=True, check=False, timeout=30)
        count, errors = swarm.parse_running(res.stdout) if res.ok else (0, [res.stderr.strip()])
        if count >= replicas:
            return polls
        time.sleep(POLL)
    raise ToolkitError(f"timed out after {cfg.converge_timeout:g}s waiting for {svc} to run {replicas} task(s)"
                       f"{' (' + '; '.join(sorted(set(errors))[:3]) + ')' if errors else ''}; check `inv logs --env {cfg.env}`")


def probe_https(url: str, host: str, cafile: str = "", timeout: float = 3.0,
                header: str = "X-App-Version") -> tuple[int, str]:
    """One GET over HTTPS to the URL's address with SNI and Host ``host``: the certificate must verify for
    ``host`` against ``cafile`` (default: the system's CAs). (status, the response's ``header``); (0, reason)
    when it cannot connect or verify."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or 443
    try:
        context = ssl.create_default_context(cafile=cafile or None)
        sock = context.wrap_socket(socket.create_connection((parts.hostname, port), timeout=timeout),
                                   server_hostname=host)
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        conn.sock = sock
        try:
            conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""),
                         headers={"Host": host if port == 443 else f"{host}:{port}"})
            resp = conn.getresponse()
            return resp.status, resp.headers.get(header, "")
        finally:
            conn.close()
    except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
        return 0, str(exc)


def probe(url: str, host: str, timeout: float = 3.0, cafile: str = "") -> tuple[int, str]:
    """(status, X-App-Version) of one GET; (0, reason) when it cannot connect. https: see probe_https."""
    if url.startswith("https://"):
        return probe_https(url, host, cafile, timeout)
    req = urllib.request.Request(url, headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers.get("X-App-Version", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("X-App-Version", "") if exc.headers else ""
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(getattr(exc, "reason", exc))


def health(cfg, version: str) -> int:
    """Poll the health URL until HEALTH_STREAK answers in a row are 200 with ``version``; return the poll count."""
    deadline, streak, last, polls = time.monotonic() + HEALTH_TIMEOUT, 0, None, 0
    while time.monotonic() < deadline:
        polls += 1
        last = probe(cfg.health_url, cfg.health_host, cafile=cfg.health_ca_file) if cfg.health_ca_file else \
            probe(cfg.health_url, cfg.health_host)
        streak = streak + 1 if last == (200, version) else 0
        if streak >= HEALTH_STREAK:
            return polls
        time.sleep(HEALTH_POLL)
    raise ToolkitError(f"health check {cfg.health_url} did not answer 200 with X-App-Version {version} within "
                       f"{HEALTH_TIMEOUT:g}s (last: {last}); the rollout finished, so inspect `inv logs --env {cfg.env}` "
                       f"and consider `inv rollback --env {cfg.env}`")
