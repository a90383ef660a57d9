"""Maintenance mode of a Swarm environment: the front proxy answers 503 + Retry-After with a simple page.

How: `inv maintenance on` creates a small service ``<stack>_maintenance`` (the proxy image with
deploy/ops/maintenance/haproxy.cfg, the page as a Swarm config) on the stack's network under the alias
``maintenance``. Every front proxy (deploy/ship/proxy/haproxy.cfg) health-checks ``tasks.maintenance``
and, while that server is up, sends every request except ``/health/...`` to it. `off` removes the service:
its HAProxy gets SIGUSR1 and, during its ``grace`` period, keeps answering while its own health check
fails, so each proxy has switched back to the app before it stops listening. No proxy restarts and no
request fails at either switch; it works on every node (no runtime API to reach per node).
"""

from __future__ import annotations

import html
import sys
import time

from deploy.core.errors import CommandFailed, ToolkitError
from deploy.core.project import ROOT

CFG_FILE = ROOT / "deploy" / "ops" / "maintenance" / "haproxy.cfg"
PAGE_TARGET = "/usr/local/etc/haproxy/maintenance.html"
DEFAULT_MESSAGE = "This site is down for maintenance. Please try again in a few minutes."
SWITCH_TIMEOUT = 60.0
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Maintenance</title>
<style>body{{font-family:sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#333}}</style></head>
<body><h1>Down for maintenance</h1><p>{message}</p></body></html>
"""


def page(message: str = "") -> str:
    return PAGE.format(message=html.escape(message.strip() or DEFAULT_MESSAGE))


def check_retry_after(value) -> int:
    text = str(value)
    if not text.isdigit() or not 1 <= int(text) <= 86400:
        raise ToolkitError(f"--retry-after {value!r}: give seconds from 1 to 86400, e.g. --retry-after 300")
    return int(text)


def service_name(cfg) -> str:
    return f"{cfg.stack_name}_maintenance"


def config_name(cfg, kind: str, text: str) -> str:
    from deploy.ship import stackfile

    return f"{cfg.stack_name}_maint{kind}_{stackfile.digest8(text)}"


def config_create_cmd(cfg, name: str) -> list:
    """The content comes on stdin; 'already exists' is fine (the name is a hash of the content)."""
    return ["docker", "config", "create", "--label", f"com.docker.stack.namespace={cfg.stack_name}",
            "--label", "djdeploy.role=maintenance", name, "-"]


def create_cmd(cfg, cfg_name: str, page_name: str, retry_after: int) -> list:
    """The maintenance service; labelled into the stack's namespace, so `docker stack rm` removes it too."""
    from deploy.ship import stackfile, swarm

    return ["docker", "--config", swarm.paths(cfg).docker_config, "service", "create", "--detach",
            "--with-registry-auth", "--name", service_name(cfg),
            "--label", f"com.docker.stack.namespace={cfg.stack_name}", "--label", "djdeploy.role=maintenance",
            "--network", f"name={stackfile.network(cfg)},alias=maintenance", "--replicas", "1",
            "--stop-signal", "SIGUSR1", "--stop-grace-period", "15s", "--env", f"RETRY_AFTER={retry_after}",
            "--config", f"source={cfg_name},target=/usr/local/etc/haproxy/haproxy.cfg",
            "--config", f"source={page_name},target={PAGE_TARGET}", cfg.proxy_image]


def inspect_cmd(cfg) -> list:
    return ["docker", "service", "inspect", "--format", "{{.Spec.Name}}", service_name(cfg)]


def remove_cmd(cfg) -> list:
    return ["docker", "service", "rm", service_name(cfg)]


def front_url(cfg) -> str:
    """The site's front page behind the proxy (the health URL's origin)."""
    from urllib.parse import urlsplit

    parts = urlsplit(cfg.health_url)
    return f"{parts.scheme}://{parts.netloc}/"


# ---- steps -----------------------------------------------------------------------------------------

def _require_proxy(cfg) -> None:
    if not cfg.proxy:
        raise ToolkitError(f"maintenance mode needs the stack's front proxy, and {cfg.source} sets PROXY=off; "
                           f"set PROXY=on and deploy once")


def is_on(cfg, run) -> bool:
    return run.run(inspect_cmd(cfg), hide=True, check=False, timeout=30).ok and not run.dry_run


def switch(cfg, run, *, on: bool, message: str = "", retry_after: int = 300, out=sys.stdout,
           probe=None, clock=time.monotonic) -> None:
    """Turn maintenance on (create the service, wait until the proxy serves the page) or off."""
    _require_proxy(cfg)
    already = is_on(cfg, run)
    if on and already:
        raise ToolkitError(f"maintenance mode is already on for {cfg.env}; to change the page, "
                           f"`inv maintenance off --env {cfg.env}` first")
    if not on and not already:
        out.write(f"maintenance mode is already off for {cfg.env}\n")
        return
    if on:
        names = []
        for kind, text in (("cfg", CFG_FILE.read_text(encoding="utf-8")), ("page", page(message))):
            names.append(config_name(cfg, kind, text))
            res = run.run(config_create_cmd(cfg, names[-1]), stdin=text, hide=True, check=False, timeout=30)
            if not res.ok and "already exists" not in res.stderr + res.stdout:
                raise CommandFailed(res.command, exit_code=res.exited, output_tail=res.stderr.strip())
        run.run(create_cmd(cfg, names[0], names[1], retry_after), hide=True, timeout=cfg.command_timeout)
    else:
        run.run(remove_cmd(cfg), hide=True, timeout=cfg.command_timeout)
    if not run.dry_run:
        wait_front(cfg, on, probe=probe, clock=clock)
    out.write(f"maintenance mode {'on' if on else 'off'} for {cfg.env}"
              f"{' (503 + Retry-After on every page but /health/)' if on else ''}\n")


def probe_front(url: str, host: str, cafile: str = "") -> tuple:
    """(status, Retry-After) of one GET of the front page; (0, '') when nothing answers. An https front is reached
    at the URL's address with SNI ``host``, its certificate verified against ``cafile`` (HEALTH_CA_FILE) or the
    system's CAs, as the deploy's health check does."""
    import urllib.error
    import urllib.request

    if url.startswith("https://"):
        from deploy.ship.wait import probe_https

        status, retry = probe_https(url, host, cafile, timeout=5, header="Retry-After")
        return (status, retry) if status else (0, "")

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(url, headers={"Host": host})
    try:
        with opener.open(req, timeout=5) as resp:
            return resp.status, resp.headers.get("Retry-After", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Retry-After", "") if exc.headers else ""
    except (urllib.error.URLError, OSError):
        return 0, ""


def wait_front(cfg, on: bool, probe=None, clock=time.monotonic, sleep=time.sleep) -> None:
    """Poll the front page until it shows the switch 3 times in a row (503 with Retry-After, or not 503)."""
    probe = probe or (lambda url, host: probe_front(url, host, cfg.health_ca_file))
    url, deadline, streak, last = front_url(cfg), clock() + SWITCH_TIMEOUT, 0, None
    while clock() < deadline:
        last = probe(url, cfg.health_host)
        done = (last[0] == 503 and bool(last[1])) if on else last[0] not in (0, 503)
        streak = streak + 1 if done else 0
        if streak >= 3:
            return
        sleep(0.2)
    raise ToolkitError(f"maintenance mode {'on' if on else 'off'}: {url} did not switch within "
                       f"{SWITCH_TIMEOUT:g}s (last answer: {last}); is the proxy deployed with this toolkit's "
                       f"haproxy.cfg? Check `inv status --env {cfg.env}`")
