"""Operating the three-node cluster environment for real (issue 11's proofs on the cluster, issue 9's HTTPS on every
node), on the stack that test_cluster_deploy left serving (one deploy here when this module runs alone):

- HTTP on every node's port answers a permanent redirect to HTTPS; `inv manage --env cluster -- createsuperuser
  --noinput` (the password from this process's environment, never printed), then a real browser (the site's name
  resolved to 127.0.0.1, trusting the cluster CA's root) logs into the admin and creates a note through the page's
  form on each node's HTTPS port;
- `inv shell --env cluster` under a pseudo-terminal reads back a typed command, and no one-off container is left;
- a backup round trip: notes written, `db.backup`, notes deleted, `db.restore --yes`, the notes are back on every
  node;
- maintenance on and off under load on every node's HTTPS port: only 503 + Retry-After while on, 0 failed requests;
- the certificate was renewed (Pebble's are short-lived) without anyone running a command, and every node's proxy
  serves the renewed one.
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

from browser import add_note as browser_add_note, admin_login, chromium, page_text  # noqa: F401 (a fixture)

from .conftest import ROOT, node_docker, poll, sh
from .test_cluster_deploy import add_note, get, served_serials
from shiphelpers import LoopbackHTTPS

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def serving(cenv):
    """The release the app service runs (test_cluster_deploy's last one, or one deployed here)."""
    from deploy.ship import executor

    image = node_docker(cenv.spec, 1, "service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
                        cenv.service("app"), check=False).stdout.strip()
    if image:  # <tag>-static after a rollback (its image with the bridged static files): the release is <tag>
        return image.split("@")[0].rpartition(":")[2].removesuffix("-static")
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


def redirect_of(e, i: int, path: str) -> tuple[int, str]:
    """(status, Location) of a plain-HTTP GET to node i's HTTP port by the site's name."""
    conn = http.client.HTTPConnection("127.0.0.1", e.spec.app_port(i), timeout=10)
    try:
        conn.request("GET", path, headers={"Host": f"{e.host}:{e.spec.app_port(i)}"})
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("Location", "")
    finally:
        conn.close()


def retry_network_changed(driver, action):
    """Chromium aborts a load on ERR_NETWORK_CHANGED (other tests add and remove bridges): up to 3 attempts."""
    for attempt in range(3):
        try:
            return action()
        except Exception:
            if attempt == 2 or "ERR_NETWORK_CHANGED" not in driver.page_source:
                raise


def test_http_redirects_to_https_on_every_node(cenv, serving):
    for i in cenv.spec.numbers:  # to the HTTPS port the nodes publish (from the host: 127.0.0.1:https_port(i))
        assert redirect_of(cenv, i, "/anything/deep?x=1") == (
            301, f"https://{cenv.host}:{cenv.spec.node_https_port}/anything/deep?x=1"), f"node {i}"


def test_createsuperuser_then_a_real_browser_logs_in_and_adds_a_note_over_https_on_every_node(cenv, serving, chromium):
    password = secrets.token_urlsafe(16)
    out = inv(cenv, "manage", "--env", "cluster", "--", "createsuperuser", "--noinput",
              DJANGO_SUPERUSER_USERNAME="clusteradmin", DJANGO_SUPERUSER_EMAIL="admin@example.org",
              DJANGO_SUPERUSER_PASSWORD=password)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "Superuser created successfully" in out.stdout, out.stdout[-2000:]
    driver = chromium(host=cenv.host, ca_pem=cenv.ca_root).driver  # real trust: the root in the browser's NSS db
    for i in cenv.spec.numbers:
        base = cenv.base(i)
        driver.delete_all_cookies()  # cookies ignore ports: each node's login starts logged out
        retry_network_changed(driver, lambda: admin_login(driver, base, "clusteradmin", password))
        assert driver.current_url == f"{base}/admin/"
        assert "Site administration" in page_text(driver)
        tools = driver.find_element("id", "user-tools").text
        assert "CLUSTERADMIN" in tools.upper(), tools
        note = f"browser-note-node{i}-{secrets.token_hex(2)}"
        retry_network_changed(driver, lambda: browser_add_note(driver, base, note))
        assert note in get(cenv, 1 + i % cenv.spec.nodes, "/")[2]  # stored once, listed by another node
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
    add_note(cenv, 3, note)
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
        assert note not in get(cenv, i, "/")[2]
    out = inv(cenv, "db.restore", name, "--env", "cluster", "--yes")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "maintenance mode on for cluster" in out.stdout and "maintenance mode off for cluster" in out.stdout
    for i in cenv.spec.numbers:
        status, _, body = get(cenv, i, "/")
        assert status == 200 and note in body, f"node {i}: {status}"


class Load:
    """Threads GET / back to back on each node's HTTPS port; record (status, Retry-After) or the error of each."""

    def __init__(self, e, per_port: int = 2):
        self.e, ports = e, [e.spec.https_port(i) for i in e.spec.numbers]
        self.results: dict[int, list] = {p: [] for p in ports}
        self.stop = threading.Event()
        self.workers = [threading.Thread(target=self.loop, args=(p,), daemon=True) for p in ports for _ in range(per_port)]
        for w in self.workers:
            w.start()

    def loop(self, port: int):
        context = self.e.tls_context()
        while not self.stop.is_set():
            try:
                conn = LoopbackHTTPS(self.e.host, port, timeout=10, context=context)
                conn.request("GET", "/")
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
    ports = [cenv.spec.https_port(i) for i in cenv.spec.numbers]
    load = Load(cenv)
    try:
        poll("load answered on every node", lambda: all(load.results[p] for p in ports), 20)
        out = inv(cenv, "maintenance", "on", "--env", "cluster", "--message", "Back at noon", "--retry-after", "120")
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        for i in cenv.spec.numbers:  # every node's proxy switched (the command waited for node 1's)
            poll(f"the maintenance page on node {i}", lambda i=i: get(cenv, i, "/anything")[0] == 503, 30)
            assert get(cenv, i, "/health/?ready=1")[0] == 200
        conn = LoopbackHTTPS(cenv.host, ports[-1], timeout=10, context=cenv.tls_context())
        conn.request("GET", "/anything")
        resp = conn.getresponse()
        assert (resp.status, resp.getheader("Retry-After")) == (503, "120")
        assert "Back at noon" in resp.read().decode()
        out = inv(cenv, "maintenance", "off", "--env", "cluster")
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        for i in cenv.spec.numbers:
            poll(f"the app again on node {i}", lambda i=i: get(cenv, i, "/")[0] == 200, 30)
        time.sleep(1)  # a last second of load after the switch back
    finally:
        results = load.finish()
    for port, got in results.items():
        kinds = {(s, r) for s, r in got}
        print(f"port {port}: {len(got)} requests, {sorted(map(str, kinds))}")
        assert not [r for r in got if r[0] == "error"], f"failed requests on port {port}"
        assert kinds <= {(200, None), (503, "120")}, kinds
        assert (503, "120") in kinds and got[-1] == (200, None), f"port {port}"


def test_the_certificate_was_renewed_and_every_node_serves_the_renewed_one(cenv, serving):
    """Pebble's certificates live 180 s (cluster_acme.VALIDITY) and the certs service renews at 2/3 of that, with no
    command run: by now (or within one lifetime) every node's proxy serves a certificate other than the one it
    served after v1."""
    from deploy.lab import cluster_acme

    first = cenv.serials or served_serials(cenv)  # this module alone: the one served now
    renewed = poll("every node to serve one renewed certificate", lambda: (now := served_serials(cenv)) and len(
        set(now.values())) == 1 and set(now.values()).isdisjoint(first.values()) and now, cluster_acme.VALIDITY, 2)
    print(f"certificate serials per node: after v1 {first}, now {renewed}")
