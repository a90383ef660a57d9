"""Cluster tests: one three-node lab cluster for this package (name ``djtest``, or $DJDEPLOY_TEST_CLUSTER so that
two test runs on one engine do not remove each other's cluster; random loopback ports),
removed by the finalizer as soon as the package's tests are done (not at the end of the whole session: the
nodes cost CPU). On a failed test the nodes' last log lines and the swarm's tasks are printed."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import time

import pytest

NAME = os.environ.get("DJDEPLOY_TEST_CLUSTER", "djtest")
TEST_LABEL = "djdeploy.test=cluster"


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_block(count: int) -> int:
    """A base port such that base+1..base+count are free on 127.0.0.1."""
    for _ in range(200):
        base = random.randrange(20000, 40000, 10)
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
    base = free_block(4)
    spec = ClusterSpec(name=NAME, nodes=3, ssh_port=base + 4, app_port_base=base, node_app_port=8000)
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
