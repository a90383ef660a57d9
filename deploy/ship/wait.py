"""Waits of a deploy: each is printed once (also in a dry run), then polled quietly with a deadline.

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
HEALTH_TIMEOUT = 60.0
HEALTH_STREAK = 3


def note(runner: Runner, text: str) -> None:
    """Record and print a step that is not a shell command (SDK call, wait, HTTP check)."""
    runner.history.append((runner.where, text))
    if runner.echo:
        runner.out.write(f"[{runner.where}]{' (dry run)' if runner.dry_run else ''} {text}\n")
        runner.out.flush()


def _quiet(run: Runner) -> Runner:
    return Runner(ctx=run.ctx, where=run.where, secrets=run.secrets, echo=False, out=run.out)


def wait_update(cfg, run: Runner, name: str, prior: tuple | None, image: str) -> None:
    """Wait for the update that started after ``prior`` (state, started-at) to end; ``prior`` None means
    the service was just created: then wait for its replicas to run."""
    svc = swarm.service(cfg, name)
    cmd = swarm.update_status_cmd(cfg, name)
    note(run, f"wait until {svc} has converged (poll `{run.describe(cmd)}`: completed, or rollback_completed = "
              f"failure; a new service: all replicas running; up to {cfg.converge_timeout:g}s)")
    if run.dry_run:
        return
    if prior is None:
        return _poll_running(cfg, run, name, cfg.replicas)
    quiet, deadline, last, reason = _quiet(run), time.monotonic() + cfg.converge_timeout, "", ""
    while time.monotonic() < deadline:
        res = quiet.run(cmd, hide=True, check=False, timeout=30)
        state, started = swarm.parse_update_status(res.stdout)
        if res.ok and state and (state, started) != tuple(prior):
            if state != last:
                message = quiet.run(swarm.update_message_cmd(cfg, name), hide=True, check=False, timeout=30).stdout.strip()
                run.out.write(f"  {svc}: {state} ({message})\n")
                reason = message if state in ("rollback_started", "paused") else reason
                last = state
            if state in swarm.TERMINAL:
                if state == "completed":
                    return
                if state == "rollback_completed":
                    raise ToolkitError(f"release {image} failed on {svc} ({reason or message}); Swarm rolled it "
                                       f"back automatically and the previous version keeps serving")
                raise ToolkitError(f"update of {svc} is {state} ({message}); check `inv status --env {cfg.env}` "
                                   f"and `inv logs --env {cfg.env}`")
        time.sleep(POLL)
    raise ToolkitError(f"timed out after {cfg.converge_timeout:g}s waiting for {svc} to finish its update "
                       f"(last state: {last or 'not started'}); check `inv status --env {cfg.env}`")


def wait_running(cfg, run: Runner, name: str, replicas: int) -> None:
    svc = swarm.service(cfg, name)
    cmd = swarm.running_cmd(cfg, name)
    note(run, f"wait until {svc} runs {replicas} healthy task(s) (poll `{run.describe(cmd)}`, up to {cfg.converge_timeout:g}s)")
    if not run.dry_run:
        _poll_running(cfg, run, name, replicas)


def _poll_running(cfg, run: Runner, name: str, replicas: int) -> None:
    svc = swarm.service(cfg, name)
    cmd = swarm.running_cmd(cfg, name)
    quiet, deadline, errors = _quiet(run), time.monotonic() + cfg.converge_timeout, []
    while time.monotonic() < deadline:
        res = quiet.run(cmd, hide=True, check=False, timeout=30)
        count, errors = swarm.parse_running(res.stdout) if res.ok else (0, [res.stderr.strip()])
        if count >= replicas:
            return
        time.sleep(POLL)
    raise ToolkitError(f"timed out after {cfg.converge_timeout:g}s waiting for {svc} to run {replicas} task(s)"
                       f"{' (' + '; '.join(sorted(set(errors))[:3]) + ')' if errors else ''}; check `inv logs --env {cfg.env}`")


def probe_https(url: str, host: str, cafile: str = "", timeout: float = 3.0) -> tuple[int, str]:
    """One GET over HTTPS to the URL's address with SNI and Host ``host``: the certificate must verify for
    ``host`` against ``cafile`` (default: the system's CAs). (0, reason) when it cannot connect or verify."""
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
            return resp.status, resp.headers.get("X-App-Version", "")
        finally:
            conn.close()
    except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
        return 0, str(exc)


def probe(url: str, host: str, timeout: float = 3.0, cafile: str = "") -> tuple[int, str]:
    """(status, X-App-Version) of one GET; (0, reason) when it cannot connect."""
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


def health(cfg, run: Runner, version: str) -> None:
    note(run, f"check {cfg.health_url} (Host: {cfg.health_host}) until {HEALTH_STREAK} answers in a row are 200 "
              f"with X-App-Version: {version} (up to {HEALTH_TIMEOUT:g}s)")
    if run.dry_run:
        return
    deadline, streak, last = time.monotonic() + HEALTH_TIMEOUT, 0, None
    while time.monotonic() < deadline:
        last = probe(cfg.health_url, cfg.health_host, cafile=cfg.health_ca_file) if cfg.health_ca_file else \
            probe(cfg.health_url, cfg.health_host)
        streak = streak + 1 if last == (200, version) else 0
        if streak >= HEALTH_STREAK:
            return
        time.sleep(0.2)
    raise ToolkitError(f"health check {cfg.health_url} did not answer 200 with X-App-Version {version} within "
                       f"{HEALTH_TIMEOUT:g}s (last: {last}); the rollout finished, so inspect `inv logs --env {cfg.env}` "
                       f"and consider `inv rollback --env {cfg.env}`")
