"""The app's logs carry real requests and nothing the health checks cause: the stack's HAProxy (haproxy:3.0-trixie
with the repository's haproxy.cfg, on a network the test creates) checks the app every second and ends every
check with a TCP reset, and the image's own HEALTHCHECK command runs too."""

import re
import uuid
from pathlib import Path

import pytest

from deploy.image.smoke import get

from .conftest import LABEL, free_port, wait_for

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[2]
HAPROXY_IMAGE = "haproxy:3.0-trixie"
SPURIOUS = re.compile(r"hr_read|hr_write|Connection reset by peer|Broken pipe")
CHECKS = 5  # health checks (one per second) that must have ended with a reset before the logs are judged


def haproxy_cfg():
    """The stack's proxy configuration, wherever the deploy/ layout keeps it."""
    found = sorted(ROOT.glob("deploy/**/proxy/haproxy.cfg"))
    assert found, "no deploy/**/proxy/haproxy.cfg in the repository"
    return found[0]


def tcp_counters(app):
    """The app container's TCP counters (its own network namespace): {'EstabResets': n, 'PassiveOpens': n, ...}."""
    code, out = app.container.exec_run(["cat", "/proc/net/snmp"])
    names, values = [line.split()[1:] for line in out.decode().splitlines() if line.startswith("Tcp:")]
    return dict(zip(names, map(int, values)))


@pytest.fixture
def proxied(docker_client, network, start, request):
    """start_proxied(env) -> (app, proxy port): the app as task `app` of the stack, HAProxy in front of it."""
    proxies = []

    def _start(env=None):
        app = start(env=env)
        network.connect(app.container, aliases=["tasks.app"])  # what Swarm's DNS answers for the service's tasks
        port = free_port()
        proxy = docker_client.containers.run(
            HAPROXY_IMAGE, detach=True, name=f"djimage-proxy-{uuid.uuid4().hex[:8]}", network=network.name,
            labels=LABEL, environment={"APP_SERVICE": "app", "APP_SLOTS": "2", "HEALTH_HOST": "localhost"},
            volumes={str(haproxy_cfg()): {"bind": "/usr/local/etc/haproxy/haproxy.cfg", "mode": "ro"}},
            ports={"8080/tcp": ("127.0.0.1", port)})
        proxies.append(proxy)
        # the server is UP only after a passed health check (init-addr none, rise 1)
        wait_for("a request through the proxy", lambda: get(port, "/health/", timeout=2)[0] == 200, timeout=30)
        return app, port

    yield _start
    for proxy in proxies:
        if getattr(getattr(request.node, "rep_call", None), "failed", False):
            print(f"--- proxy logs ---\n{proxy.logs().decode('utf-8', 'replace')[-3000:]}")
        proxy.remove(force=True)


def checks_end_in_resets(app, count=CHECKS):
    """Wait until `count` more connections were reset by the peer (HAProxy's way to end each check)."""
    before = tcp_counters(app)["EstabResets"]
    wait_for(f"{count} health checks ended by a reset",
             lambda: tcp_counters(app)["EstabResets"] - before >= count, timeout=count * 3 + 10, interval=0.2)


def test_health_checks_leave_no_lines_and_requests_are_logged(proxied):
    app, port = proxied()
    for _ in range(3):  # the image's own HEALTHCHECK command
        code, out = app.container.exec_run(["python", "-m", "djdeploy_django.healthcheck"])
        assert code == 0, out
    checks_end_in_resets(app)
    assert get(port, "/")[0] == 200  # a real request, through the proxy
    wait_for("the request's log line", lambda: re.search(r"\] GET / => generated .*\(HTTP/1\.1 200\)", app.logs()))
    logs = app.logs()
    assert not SPURIOUS.search(logs), logs[-3000:]
    assert "GET /health/" not in logs, logs[-3000:]  # no request line for any probe


def test_without_the_log_drain_the_proxy_checks_spam_the_logs(proxied):
    """Control: the same checks with the drain rule replaced by one that matches nothing."""
    app, _ = proxied(env={"UWSGI_LOG_DRAIN": "^a line that never appears$"})
    checks_end_in_resets(app)
    wait_for("the router's reset lines", lambda: "hr_read(): Connection reset by peer" in app.logs(), timeout=10)
