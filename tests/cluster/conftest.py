"""Cluster tests: one three-node lab cluster for this package (name ``djtest``, or $DJDEPLOY_TEST_CLUSTER so that
two runs on one machine do not remove each other's nodes; random loopback ports), removed by the finalizer as soon
as the package's tests are done (not at the end of the whole session: the nodes cost CPU). On a failed test the
nodes' last log lines and the swarm's tasks are printed.

One deploy environment for the package (``cenv``: a unique stack on that cluster, HTTPS with certificates from the
cluster's own Pebble, deploy.lab.cluster_acme): test_cluster_deploy builds on it, test_cluster_ops operates what it
left serving (or deploys once itself when it runs alone). Clients reach node i at 127.0.0.1:<https_port(i)> with
SNI/Host ``<cluster>-cluster.test`` and trust the cluster CA's root (``NodeSite``)."""

from __future__ import annotations

import io
import os
import random
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ship"))
from shiphelpers import Site, _Handler  # noqa: E402  (tests/ship's HTTPS client, reused)

NAME = os.environ.get("DJDEPLOY_TEST_CLUSTER") or "djtest"
ROOT = Path(__file__).resolve().parents[2]
TEST_LABEL = "djdeploy.test=cluster"


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def ephemeral_low() -> int:
    """The first port the kernel hands out as a client's source port (ip_local_port_range)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_block(count: int) -> int:
    """A base port such that base+1..base+count are free on 127.0.0.1, below the ephemeral range: a node's port is
    unbound while the node is down, and a client's source port taken there would make `docker start` fail
    ("bind: address already in use", seen after a node crash under load)."""
    top = min(40000, ephemeral_low()) - count - 1
    for _ in range(200):
        base = random.randrange(20000, top, 10)
        if all(_free(base + k) for k in range(1, count + 1)):
            return base
    raise RuntimeError("no free loopback port block")


def sh(*argv: str, stdin: str | None = None, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, check=check)


def node_docker(spec, i: int, *args: str, **kw) -> subprocess.CompletedProcess:
    return sh("docker", "exec", "-i", spec.node(i), "docker", *args, **kw)


def poll(what: str, fn, timeout: float, interval: float = 0.5):
    """Call ``fn`` until it returns a truthy value; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what} (last: {got!r})")
        time.sleep(interval)


@pytest.fixture(scope="package")
def cluster_spec(request, docker_client):
    from deploy.lab import cluster
    from deploy.lab.cluster_plan import ClusterSpec

    cluster.down(NAME, echo=False)  # leftovers of an interrupted earlier run
    base = free_block(7)  # HTTP base+1..3, SSH base+4, HTTPS base+5..7
    spec = ClusterSpec(name=NAME, nodes=3, ssh_port=base + 4, app_port_base=base, https_port_base=base + 4)
    request.addfinalizer(lambda: cluster.down(NAME, echo=False))
    started = time.monotonic()
    spec = cluster.up(spec=spec, echo=False)
    print(f"cluster {NAME} up in {time.monotonic() - started:.1f}s")
    return spec


@pytest.fixture(autouse=True)
def _dump_on_failure(request):
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is None or not rep.failed or "cluster_spec" not in request.fixturenames:
        return
    spec = request.getfixturevalue("cluster_spec")
    for i in spec.numbers:
        logs = sh("docker", "logs", "--tail", "20", spec.node(i), check=False)
        print(f"--- last log lines of {spec.node(i)}:\n{logs.stdout}{logs.stderr}")
    tasks = sh("docker", "exec", spec.node(1), "sh", "-c",
               "docker service ls -q | xargs -r docker service ps --no-trunc", check=False)
    print(f"--- swarm tasks:\n{tasks.stdout}{tasks.stderr}")


@pytest.fixture(scope="session")
def registry_login():
    """(user, password) of the lab registry; pushes from the host engine use them in the SDK's auth header."""
    from deploy.lab import paths

    return paths.REGISTRY_USER, paths.registry_password()


@pytest.fixture(scope="session")
def probe_image(docker_client, registry_login):
    """The probe image (tests/cluster/probe), pushed as 127.0.0.1:5000/djtest-probe:<content hash>."""
    import hashlib
    from pathlib import Path

    from deploy.lab import paths

    ctx = Path(__file__).resolve().parent / "probe"
    tag = hashlib.sha256((ctx / "Dockerfile").read_bytes()).hexdigest()[:12]
    repo = f"{paths.REGISTRY}/djtest-probe"
    docker_client.images.build(path=str(ctx), tag=f"{repo}:{tag}", rm=True, pull=False,
                               labels={"djdeploy.test": "cluster"})
    user, password = registry_login
    for line in docker_client.images.push(repo, tag=tag, stream=True, decode=True,
                                          auth_config={"username": user, "password": password}):
        assert "error" not in line, line
    yield f"{repo}:{tag}"
    docker_client.images.remove(f"{repo}:{tag}", noprune=False)


@pytest.fixture(scope="package")
def manager(cluster_spec):
    """A Fabric connection to node 1 (root, cluster key) that trusts only the cluster's known_hosts."""
    import paramiko
    from fabric import Config, Connection

    from deploy.lab.cluster_state import ClusterFiles

    files = ClusterFiles(cluster_spec.name)
    conn = Connection("127.0.0.1", port=cluster_spec.ssh_port, user="root", connect_timeout=10,
                      config=Config(overrides={"load_ssh_configs": False}),
                      connect_kwargs={"key_filename": [str(files.key)], "look_for_keys": False,
                                      "allow_agent": False, "banner_timeout": 10, "auth_timeout": 10})
    client = paramiko.SSHClient()
    client.load_host_keys(str(files.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    conn.client = client
    yield conn
    conn.close()


class ClusterEnv:
    """deploy/cluster.env of a unique stack on the package's cluster: HTTPS on every node with certificates from the
    cluster's Pebble, as `inv cluster.env` writes it."""

    def __init__(self, spec, directory: Path):
        from deploy.lab import cluster_acme, cluster_env

        self.spec, self.dir, self.host = spec, directory, spec.host_name
        self.stack = "djtc" + secrets.token_hex(3)
        key = directory / "django_secret_key"
        key.write_text(secrets.token_urlsafe(50))
        key.chmod(0o600)
        extra = {"DJANGO_SECRET_KEY_FILE": str(key), "CONVERGE_TIMEOUT": "180"}
        self.tls = cluster_acme.ensure(local_runner(), spec, say=lambda line: None)
        self.ca_root = Path(self.tls["HEALTH_CA_FILE"]).read_text()
        cluster_env.write(spec, env_dir=directory, env="cluster", stack=self.stack, replicas=4, extra=extra,
                          tls=self.tls)
        self.tags: list[str] = []
        self.serials: dict[int, str] = {}  # the certificate each node served first (test_cluster_deploy's v1)

    def tls_context(self):
        import ssl

        return ssl.create_default_context(cadata=self.ca_root)

    def base(self, i: int) -> str:
        return f"https://{self.host}:{self.spec.https_port(i)}"

    def cfg(self):
        from deploy.ship import config

        return config.load("cluster", env_dir=self.dir, environ={})

    def tag(self, name: str) -> str:
        self.tags.append(f"{self.stack}-{name}")
        return self.tags[-1]

    def service(self, name: str) -> str:
        return f"{self.stack}_{name}"

    def inv(self, *args: str, timeout: float = 300, **environ: str) -> subprocess.CompletedProcess:
        """`inv ARGS` against this environment, stdin not a terminal; ``environ`` adds variables."""
        env = dict(os.environ, DJDEPLOY_ENV_DIR=str(self.dir), PYTHONUNBUFFERED="1", **environ)
        return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def local_runner():
    from invoke import Context

    from deploy.core.runner import Runner

    return Runner(ctx=Context(), echo=False)


class NodeSite(Site):
    """A browser-like client (tests/ship's Site: CSRF cookie and token by hand) of node i's HTTPS port: 127.0.0.1,
    SNI and certificate verification for the cluster's host name against the cluster CA's root."""

    def __init__(self, e: ClusterEnv, i: int):
        import urllib.request

        self.base = e.base(i)
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _Handler(context=e.tls_context()))


@pytest.fixture(scope="package")
def cenv(cluster_spec, tmp_path_factory):
    from deploy.lab import cluster_env
    from deploy.ship import stackfile

    from assetclient import scratch_context

    e = ClusterEnv(cluster_spec, tmp_path_factory.mktemp("clusterenv"))
    e.ctx = scratch_context(tmp_path_factory.mktemp("clusterctx"))  # releases with their own CSS/JS (assetclient)
    proxy = stackfile.stack_spec(e.cfg(), "img", "t", "r", "c")["services"]["proxy"]["deploy"]
    assert proxy.get("mode") == "global", "the stack must run one proxy per node for traffic to enter everywhere"
    cluster_env.push_stand_ins(out=io.StringIO())
    yield e
    for tag in e.tags + [t + "-static" for t in e.tags]:  # -static: a rollback's image (deploy.image.bridge)
        for ref in (f"djapp:{tag}", f"127.0.0.1:5000/djapp:{tag}"):
            sh("docker", "rmi", ref, check=False)
    # Everything else the deploy made lives inside the nodes: the package finalizer (cluster.down) removes it.
