"""Uploads on S3 on a two-node lab cluster: an upload is served by replicas on both nodes, and is still there
after the worker holding a replica is stopped. The cluster (``djupl``, random loopback ports) and the S3 server
(attached to the cluster's network, reached by its address) live for this module only."""

from __future__ import annotations

import io
import os
import random
import secrets
import socket

import pytest

from tests.uploads.conftest import PNG_BYTES, Site, docker, start_store, wait_for

pytestmark = [pytest.mark.cluster]
NAME = "djupl"


def free_block(count: int) -> int:
    for _ in range(200):
        base = random.randrange(20000, 40000, 10)
        try:
            for k in range(1, count + 1):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + k))
            return base
        except OSError:
            continue
    raise RuntimeError("no free loopback port block")


def node_docker(spec, i: int, *args: str):
    return docker("exec", spec.node(i), "docker", *args, check=False)


def placement(spec, service: str) -> list[str]:
    out = node_docker(spec, 1, "service", "ps", "--filter", "desired-state=running", "--format",
                      "{{.Node}}\t{{.CurrentState}}", service).stdout
    return sorted(line.split("\t")[0] for line in out.splitlines() if "\tRunning" in line)


@pytest.fixture(scope="module")
def cluster_env(tmp_path_factory):
    from invoke import Context

    from deploy.core.runner import Runner
    from deploy.lab import cluster, cluster_env, deploy_env, s3
    from deploy.lab.cluster_plan import ClusterSpec

    cluster.down(NAME, echo=False)
    base = free_block(5)  # HTTP base+1..2, SSH base+3, HTTPS base+4..5 (plain HTTP here: TLS_MODE=external)
    store = s3.S3Spec(prefix=f"{NAME}c{secrets.token_hex(2)}", labels=(("djdeploy.test", "uploads"),))
    runner, tags, saved = Runner(ctx=Context(), echo=False), [], os.environ.get("IMAGE_EXTRAS")
    try:
        spec = cluster.up(spec=ClusterSpec(name=NAME, nodes=2, ssh_port=base + 3, app_port_base=base,
                                           https_port_base=base + 3, node_app_port=8000), echo=False)
        start_store(store, spec.network, "uploads")
        ip = docker("inspect", "--format", f'{{{{(index .NetworkSettings.Networks "{spec.network}").IPAddress}}}}',
                    store.container).stdout.strip()
        directory = tmp_path_factory.mktemp("uploadscluster")
        key = directory / "key"
        key.write_text(secrets.token_urlsafe(50))
        stack = "djuplc" + secrets.token_hex(2)
        extra = {"DJANGO_SECRET_KEY_FILE": str(key), "CONVERGE_TIMEOUT": "180", "APP_ENV_DJANGO_TEST_ENDPOINTS": "on",
                 **deploy_env.s3_keys("uploads", endpoint=s3.endpoint_url(ip))}
        cluster_env.write(spec, env_dir=directory, env="cluster", stack=stack, replicas=2, extra=extra)
        cluster_env.push_stand_ins(out=io.StringIO())
        os.environ["IMAGE_EXTRAS"] = "s3"
        yield spec, directory, stack, tags
    finally:
        if saved is None:
            os.environ.pop("IMAGE_EXTRAS", None)
        else:
            os.environ["IMAGE_EXTRAS"] = saved
        s3.remove(runner, store)            # first: it is attached to the cluster's network
        cluster.down(NAME, echo=False)
        for tag in tags:
            for ref in (f"djapp:{tag}", f"127.0.0.1:5000/djapp:{tag}"):
                docker("rmi", ref, check=False)


def test_an_upload_is_served_on_every_node_and_survives_the_loss_of_a_worker(cluster_env):
    from deploy.ship import config, executor

    spec, directory, stack, tags = cluster_env
    tags.append(f"{stack}-v1")
    out = io.StringIO()
    outcome = executor.deploy(config.load("cluster", env_dir=directory, environ={}), tag=tags[-1], out=out)
    print(out.getvalue()[-3000:])
    assert outcome.result == "ok"
    app = f"{stack}_app"
    assert placement(spec, app) == [spec.node(1), spec.node(2)], "one replica on each node"
    name, _ = Site(spec.app_port(1)).upload("cluster.png", PNG_BYTES)
    served = set()

    def every_replica_and_node():
        for i in spec.numbers:             # through each node's own proxy
            status, headers, body = Site(spec.app_port(i)).get(f"/test/upload/?name={name}")
            assert (status, body) == (200, PNG_BYTES)
            served.add(headers["X-Served-By"])
        return len(served) >= 2
    wait_for(every_replica_and_node, 30, "both replicas (one per node) to serve the upload")
    docker("stop", "--time", "40", spec.node(2))
    wait_for(lambda: placement(spec, app) == [spec.node(1), spec.node(1)], 60,
             "both replicas running on the surviving node")

    def survivor_serves():
        try:
            return Site(spec.app_port(1)).get(f"/test/upload/?name={name}")[2] == PNG_BYTES
        except OSError:     # a request that met the dying replica: HAProxy answers 50x while it notices
            return False
    wait_for(survivor_serves, 30, "the upload through the surviving node")
