"""TLS_MODE=external for real: TLS ends at a load balancer before the stack; the stack's proxy (the rendered config)
keeps X-Forwarded-Proto only from TRUSTED_LB and the app trusts only the proxy's network.

Containers on a bridge network this test creates: the app (the image the session deployed, no database), the proxy (the edge image with
the config deploy.ship.edge_cfg renders for TLS_MODE=external). A connection to the proxy's published loopback port
arrives from the network's gateway, which plays the load balancer when TRUSTED_LB names it.
Django's CSRF check shows what the app believes: a secure request without Origin/Referer is refused (strict HTTPS
referer check, 403), an insecure one passes it; with the browser's Origin, the admin login POST passes CSRF (there is
no database here, so the login itself is not attempted past that: the browser tests log in for real)."""

from __future__ import annotations

import json
import secrets
import time
from types import SimpleNamespace

import pytest

from shiphelpers import docker, free_port
from test_https_lab import serving  # noqa: F401 (a fixture: the session's deployed app)

pytestmark = [pytest.mark.lab, pytest.mark.engine]
NAME = "shop.djdeploy.test"
LABEL = "djdeploy.test=https-external"


def render(trusted_lb: str) -> str:
    from deploy.ship import edge_cfg

    cfg = SimpleNamespace(stack_name="ext", proxy=True, publish_mode="ingress", tls_mode="external", tls=False, replicas=1, health_host=NAME,
                          trusted_lb=trusted_lb, cert_sync_interval=10)
    return edge_cfg.render(cfg)


@pytest.fixture(scope="module")
def net(tmp_path_factory, env, serving):
    image = docker("service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
                   f"{env.stack}_app").stdout.strip()
    name = "djtest-ext-" + secrets.token_hex(3)
    docker("network", "create", "--label", LABEL, name)
    ipam = json.loads(docker("network", "inspect", "--format", "{{json .IPAM.Config}}", name).stdout)[0]
    app = docker("run", "-d", "--label", LABEL, "--network", name, "--network-alias", "tasks.app",
                 "-e", "DATABASE_URL=", "-e", f"DJANGO_SECRET_KEY={secrets.token_urlsafe(50)}",
                 "-e", f"DJANGO_ALLOWED_HOSTS={NAME}", "-e", f"DJANGO_TRUSTED_PROXY={ipam['Subnet']}",
                 image).stdout.strip()
    try:
        from deploy.ship import edge_image

        yield SimpleNamespace(name=name, gateway=ipam["Gateway"], dir=tmp_path_factory.mktemp("ext"), app=app,
                              edge=edge_image.ref(env.cfg()))   # the stack's proxy image, built by the session deploy
    finally:
        for c in docker("ps", "-aq", "--filter", f"label={LABEL}").stdout.split():
            print(docker("logs", "--tail", "20", c, check=False).stderr[-2000:])
            docker("rm", "-f", c, check=False)
        docker("network", "rm", name, check=False)


def proxy(net, trusted_lb: str) -> int:
    cfg_file = net.dir / f"haproxy-{secrets.token_hex(2)}.cfg"
    cfg_file.write_text(render(trusted_lb))
    cfg_file.chmod(0o644)
    port = free_port()
    docker("run", "-d", "--label", LABEL, "--network", net.name, "-p", f"127.0.0.1:{port}:8080",
           "-v", f"{cfg_file}:/usr/local/etc/haproxy/haproxy.cfg:ro", net.edge)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if Plain(port).get("/health/")[0] == 200:
                return port
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"the proxy on 127.0.0.1:{port} did not answer 200 on /health/")


class Plain:
    """Plain HTTP to the proxy, as the load balancer (or a client) would send it."""

    def __init__(self, port):
        self.port = port

    def get(self, path):
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("GET", path, headers={"Host": NAME})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Set-Cookie", ""), resp.read().decode()

    def post_login(self, headers: dict) -> int:
        """POST the admin login form with a valid CSRF cookie and token (the status: 403 = CSRF refused)."""
        import http.client
        import re
        import urllib.parse

        _, cookie, page = self.get("/admin/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        csrf = re.search(r"csrftoken=([^;]+)", cookie).group(1)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        body = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "username": "nobody", "password": "x"})
        conn.request("POST", "/admin/login/", body=body,
                     headers={"Host": NAME, "Cookie": f"csrftoken={csrf}",
                              "Content-Type": "application/x-www-form-urlencoded", **headers})
        return conn.getresponse().status


def test_forwarded_proto_from_the_trusted_load_balancer_makes_requests_secure_and_login_posts_work(net):
    site = Plain(proxy(net, net.gateway))  # the gateway is where our loopback connections come from
    assert site.post_login({"X-Forwarded-Proto": "https"}) == 403        # secure: strict referer check
    assert site.post_login({"X-Forwarded-Proto": "https", "Origin": f"https://{NAME}"}) != 403  # a browser's POST
    assert site.post_login({}) != 403                                      # no header: plain http


def test_forwarded_proto_from_anyone_else_is_overwritten(net):
    site = Plain(proxy(net, "192.0.2.1/32"))  # a load balancer that is not us
    assert site.post_login({"X-Forwarded-Proto": "https"}) != 403  # treated as plain http: no referer check
