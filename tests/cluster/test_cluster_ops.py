"""Operating the three-node cluster environment for real (issue 11's proofs on the cluster), on the stack that
test_cluster_deploy left serving (one deploy here when this module runs alone):

- `inv manage --env cluster -- createsuperuser --noinput` (the password from this process's environment, never
  printed), then a real browser logs into the admin over HTTPS by the site's name, through a TLS load balancer in
  front of a worker node (the cluster runs TLS_MODE=external, the way a cloud load balancer fronts a Swarm);
- `inv shell --env cluster` under a pseudo-terminal reads back a typed command, and no one-off container is left;
- a backup round trip: notes written, `db.backup`, notes deleted, `db.restore --yes`, the notes are back on every
  node;
- maintenance on and off under load on every node's port: only 503 + Retry-After while on, 0 failed requests.
"""

from __future__ import annotations

import http.client
import io
import re
import secrets
import sys
import threading
import time

import pytest

from browser import admin_login, chromium, page_text  # noqa: F401 (chromium is a fixture)

from .conftest import FRONT_HOST, ROOT, node_docker, poll, sh
from .test_cluster_deploy import add_note, get
from .tlsfront import TLSFront

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def serving(cenv):
    """The release the app service runs (test_cluster_deploy's last one, or one deployed here)."""
    from deploy.ship import executor

    image = node_docker(cenv.spec, 1, "service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
                        cenv.service("app"), check=False).stdout.strip()
    if image:
        return image.split("@")[0].rpartition(":")[2]
    tag, out = cenv.tag("ops1"), io.StringIO()
    outcome = executor.deploy(cenv.cfg(), tag=tag, build=True, out=out)
    assert outcome.result == "ok", out.getvalue()[-3000:]
    return tag


def inv(cenv, *args, **environ):
    """`inv ARGS --env cluster ...`; fails the test if a secret of the environment shows in its output."""
    out = cenv.inv(*args, timeout=300, **environ)
    text = out.stdout + out.stderr
    for secret in list(cenv.cfg().secrets) + list(environ.values()):
        if len(secret) >= 8:
            assert secret not in text, f"inv {' '.join(args)} printed a secret"
    return out


def manager_sh(cenv, script: str):
    """A shell script on node 1 (the manager, where the deploy dir and the backups live)."""
    return sh("docker", "exec", cenv.spec.node(1), "sh", "-c", script, check=False)


def leftovers(cenv) -> list:
    """One-off containers and their secret directories still on the manager (node 1)."""
    containers = node_docker(cenv.spec, 1, "ps", "-aq", "--filter", "label=djdeploy.role=oneoff",
                             "--filter", f"label=djdeploy.stack={cenv.stack}").stdout.split()
    dirs = manager_sh(cenv, f"ls /var/lib/djdeploy/{cenv.stack} | grep _oneoff_").stdout.split()
    return containers + dirs


def plain_headers(port: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/", headers={"Host": FRONT_HOST})
        resp = conn.getresponse()
        resp.read()
        return {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def test_createsuperuser_then_a_real_browser_logs_into_the_admin_over_https(cenv, serving, chromium):
    password = secrets.token_urlsafe(16)
    out = inv(cenv, "manage", "--env", "cluster", "--", "createsuperuser", "--noinput",
              DJANGO_SUPERUSER_USERNAME="clusteradmin", DJANGO_SUPERUSER_EMAIL="admin@example.org",
              DJANGO_SUPERUSER_PASSWORD=password)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "Superuser created successfully" in out.stdout, out.stdout[-2000:]
    port = cenv.spec.app_port(2)  # a worker's proxy
    driver = chromium(host=FRONT_HOST).driver
    # The control, first (before the browser learns HSTS for the name): plain HTTP by the site's name drops the
    # Secure cookies, so the login POST gets Django's CSRF 403. A browser logs in only over HTTPS.
    with pytest.raises(AssertionError, match="admin login failed"):
        admin_login(driver, f"http://{FRONT_HOST}:{port}", "clusteradmin", password)
    assert "CSRF verification failed" in driver.page_source, page_text(driver)[:500]
    with TLSFront(FRONT_HOST, port) as lb:
        # The app sees HTTPS (HSTS comes from Django's SecurityMiddleware on secure requests only): the node's proxy
        # kept the load balancer's X-Forwarded-Proto because it arrives from TRUSTED_LB.
        status, headers = lb.get("/")
        assert status == 200 and "strict-transport-security" in headers, headers
        assert "strict-transport-security" not in plain_headers(port)
        base = f"https://{FRONT_HOST}:{lb.port}"
        driver = chromium(host=FRONT_HOST, ca_pem=lb.ca_pem).driver
        for attempt in range(3):  # Chromium aborts a load on ERR_NETWORK_CHANGED (other tests add/remove bridges)
            try:
                admin_login(driver, base, "clusteradmin", password)
                break
            except Exception:
                if attempt == 2 or "ERR_NETWORK_CHANGED" not in driver.page_source:
                    raise
        assert driver.current_url == f"{base}/admin/"
        assert "Site administration" in page_text(driver)
        tools = driver.find_element("id", "user-tools").text
        assert "CLUSTERADMIN" in tools.upper(), tools
    assert leftovers(cenv) == []


def test_shell_under_a_pseudo_terminal_reads_back_a_typed_command(cenv, serving):
    sys.path.insert(0, str(ROOT / "tests" / "ship"))
    from shiphelpers import pty_shell

    status, printed = pty_shell(cenv.dir, "cluster", "echo cluster-$((6*7))-tty; test -t 0 && echo is-a-tty; hostname",
                                "cluster-42-tty", "is-a-tty")
    assert status == 3
    for secret in cenv.cfg().secrets:
        assert secret not in printed
    poll("no one-off container or secrets dir left on the manager", lambda: leftovers(cenv) == [], 30)


def backups(cenv) -> list:
    got = manager_sh(cenv, f"ls /var/lib/djdeploy/{cenv.stack}/backups").stdout.split()
    return sorted(n for n in got if n.endswith(".dump"))


def test_backup_round_trip(cenv, serving):
    note = f"cluster-ops-note-{secrets.token_hex(3)}"
    add_note(cenv.spec.app_port(3), note)
    before = backups(cenv)
    out = inv(cenv, "db.backup", "--env", "cluster")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    name = re.search(r"^backup (\S+) ", out.stdout, re.M).group(1)
    assert backups(cenv) == sorted(before + [name])
    meta = manager_sh(cenv, f"cat /var/lib/djdeploy/{cenv.stack}/backups/{name}.meta").stdout
    assert f"release={serving}\n" in meta and "reason=manual\n" in meta, meta
    gone = inv(cenv, "manage", "--env", "cluster", "--", "shell", "-c",
               "from notes.models import Note; print('deleted', Note.objects.all().delete()[0])")
    assert gone.returncode == 0 and "deleted" in gone.stdout, gone.stdout[-2000:] + gone.stderr[-2000:]
    for i in cenv.spec.numbers:
        assert note not in get(cenv.spec.app_port(i), "/")[2]
    out = inv(cenv, "db.restore", name, "--env", "cluster", "--yes")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "maintenance mode on for cluster" in out.stdout and "maintenance mode off for cluster" in out.stdout
    for i in cenv.spec.numbers:
        status, _, body = get(cenv.spec.app_port(i), "/")
        assert status == 200 and note in body, f"node {i}: {status}"


class Load:
    """Threads GET / back to back on each node's port; record (status, Retry-After) or the error of each."""

    def __init__(self, ports: list[int], per_port: int = 2):
        self.results: dict[int, list] = {p: [] for p in ports}
        self.stop = threading.Event()
        self.workers = [threading.Thread(target=self.loop, args=(p,), daemon=True) for p in ports for _ in range(per_port)]
        for w in self.workers:
            w.start()

    def loop(self, port: int):
        while not self.stop.is_set():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/", headers={"Host": "127.0.0.1"})
                resp = conn.getresponse()
                resp.read()
                self.results[port].append((resp.status, resp.getheader("Retry-After")))
                conn.close()
            except OSError as exc:
                self.results[port].append(("error", str(exc)))
            time.sleep(0.02)

    def finish(self) -> dict:
        self.stop.set()
        for w in self.workers:
            w.join(15)
        return self.results


def test_maintenance_on_and_off_under_load_on_every_node(cenv, serving):
    ports = [cenv.spec.app_port(i) for i in cenv.spec.numbers]
    load = Load(ports)
    try:
        poll("load answered on every node", lambda: all(load.results[p] for p in ports), 20)
        out = inv(cenv, "maintenance", "on", "--env", "cluster", "--message", "Back at noon", "--retry-after", "120")
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        for port in ports:  # every node's proxy switched (the command waited for node 1's)
            poll(f"the maintenance page on port {port}", lambda port=port: get(port, "/anything")[0] == 503, 30)
            assert get(port, "/health/?ready=1")[0] == 200
        conn = http.client.HTTPConnection("127.0.0.1", ports[-1], timeout=10)
        conn.request("GET", "/anything", headers={"Host": "127.0.0.1"})
        resp = conn.getresponse()
        assert (resp.status, resp.getheader("Retry-After")) == (503, "120")
        assert "Back at noon" in resp.read().decode()
        out = inv(cenv, "maintenance", "off", "--env", "cluster")
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        for port in ports:
            poll(f"the app again on port {port}", lambda port=port: get(port, "/")[0] == 200, 30)
        time.sleep(1)  # a last second of load after the switch back
    finally:
        results = load.finish()
    for port, got in results.items():
        kinds = {(s, r) for s, r in got}
        print(f"port {port}: {len(got)} requests, {sorted(map(str, kinds))}")
        assert not [r for r in got if r[0] == "error"], f"failed requests on port {port}"
        assert kinds <= {(200, None), (503, "120")}, kinds
        assert (503, "120") in kinds and got[-1] == (200, None), f"port {port}"
