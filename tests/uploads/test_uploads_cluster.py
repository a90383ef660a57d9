"""Uploads on S3 on a two-node lab cluster: an upload of the bundled app, and an image of the Wagtail site from
`wagtail start` (tests/own/fixtures.py; a second stack deployed from its own directory, the image uploaded through
its admin by a real browser) with its renditions, are served by replicas on both nodes, and are still there after
the worker holding a replica is stopped. The cluster
(``djupl``, random loopback ports; the Wagtail stack publishes the nodes' HTTPS port, unused in plain HTTP) and the
S3 server (attached to the cluster's network, reached by its address) live for this module only."""

from __future__ import annotations

import io
import os
import random
import secrets
import socket

import pytest

from tests.own.conftest import add_serve_view, create_superuser, make_png
from tests.uploads.conftest import PNG_BYTES, Site, docker, start_store, wait_for
from browser import (chromium, retry_network_change, wagtail_login, wagtail_rendition_path,  # noqa: F401
                     wagtail_upload_image)

pytestmark = [pytest.mark.cluster]
NAME = "djupl"
STATE: dict = {}


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
        common = {"DJANGO_SECRET_KEY_FILE": str(key), "CONVERGE_TIMEOUT": "180",
                  **deploy_env.s3_keys("uploads", endpoint=s3.endpoint_url(ip))}
        cluster_env.write(spec, env_dir=directory, env="cluster", stack=stack, replicas=2,
                          extra={**common, "APP_ENV_DJANGO_TEST_ENDPOINTS": "on"})
        cluster_env.push_stand_ins(out=io.StringIO())
        os.environ["IMAGE_EXTRAS"] = "s3"
        yield spec, directory, stack, tags, common
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


def test_an_upload_is_served_on_every_node(cluster_env):
    from deploy.ship import config, executor

    spec, directory, stack, tags, _ = cluster_env
    tags.append(f"{stack}-v1")
    out = io.StringIO()
    outcome = executor.deploy(config.load("cluster", env_dir=directory, environ={}), tag=tags[-1], out=out)
    print(out.getvalue()[-3000:])
    assert outcome.result == "ok"
    assert placement(spec, f"{stack}_app") == [spec.node(1), spec.node(2)], "one replica on each node"
    name, _ = Site(spec.app_port(1)).upload("cluster.png", PNG_BYTES)
    served = set()

    def every_replica_and_node():
        for i in spec.numbers:             # through each node's own proxy
            status, headers, body = Site(spec.app_port(i)).get(f"/test/upload/?name={name}")
            assert (status, body) == (200, PNG_BYTES)
            served.add(headers["X-Served-By"])
        return len(served) >= 2
    wait_for(every_replica_and_node, 30, "both replicas (one per node) to serve the upload")
    STATE["upload"] = f"{stack}_app", name


def rendition(port: int, path: str, size: tuple) -> bytes | None:
    """The rendition at ``path`` through a node's proxy: a PNG of ``size`` (None: no answer yet)."""
    from PIL import Image

    try:
        status, headers, body = Site(port).get(path)
    except OSError:     # a request that met a dying replica: HAProxy answers 50x while it notices
        return None
    with Image.open(io.BytesIO(body)) as img:
        assert (status, img.format, img.size) == (200, "PNG", size)
    return body


def test_a_wagtail_sites_image_renditions_are_served_on_every_node(cluster_env, wagtail_built, chromium, tmp_path):
    """The site deployed with `inv deploy --env wagcluster` from its directory (publishing the nodes' HTTPS port);
    a real browser signs into its admin through node 1 and uploads an image: each node's proxy serves its
    rendition, the same bytes."""
    from deploy.lab import cluster_env as cluster_files

    spec, directory, _, _, common = cluster_env
    site, stack = wagtail_built, "djuplw" + secrets.token_hex(2)
    add_serve_view(site)
    cluster_files.write(spec, env_dir=directory, env="wagcluster", stack=stack, replicas=2, extra={
        **common, "APP_IMAGE": site.image, "PUBLISHED_PORT": str(spec.node_https_port),
        "HEALTH_URL": f"http://127.0.0.1:{spec.https_port(1)}/health/?ready=1"})
    environ = {"DJDEPLOY_ENV_DIR": str(directory)}
    out = site.inv("deploy", "--env", "wagcluster", environ=environ, timeout=900).stdout
    print(out[-2500:])
    assert "is serving on wagcluster" in out
    assert placement(spec, f"{stack}_app") == [spec.node(1), spec.node(2)], "one replica on each node"
    password = create_superuser(site, "wagcluster", environ)
    base, photo = f"http://localhost:{spec.https_port(1)}", tmp_path / "cluster.png"
    make_png(photo)
    driver = chromium().driver      # localhost: a secure context, so the admin's Secure cookies work over HTTP
    retry_network_change(driver, lambda: wagtail_login(driver, base, "wagadmin", password))
    image_id = wagtail_upload_image(driver, base, photo, "Cluster " + secrets.token_hex(3))
    urls = [wagtail_rendition_path(driver, base, image_id, w, h) for w, h in ((120, 80), (60, 40))]
    print("renditions:", urls)
    bodies = {rendition(spec.https_port(i), urls[0], (120, 80)) for i in spec.numbers}
    assert len(bodies) == 1 and None not in bodies, "both nodes serve the same rendition"
    STATE["wagtail"] = f"{stack}_app", urls, bodies.pop()


def test_both_survive_the_loss_of_a_worker(cluster_env):
    """Node 2 stopped: both services' replicas run on node 1 and still serve the upload; the Wagtail site serves
    its rendition (the same bytes) and makes another from the original on S3."""
    spec = cluster_env[0]
    assert "upload" in STATE, "the bundled app's upload failed"
    services = [STATE["upload"][0]] + ([STATE["wagtail"][0]] if "wagtail" in STATE else [])
    docker("stop", "--time", "40", spec.node(2))
    for service in services:
        wait_for(lambda: placement(spec, service) == [spec.node(1), spec.node(1)], 90,
                 f"both replicas of {service} running on the surviving node")

    def survivor_serves():
        try:
            return Site(spec.app_port(1)).get(f"/test/upload/?name={STATE['upload'][1]}")[2] == PNG_BYTES
        except OSError:     # a request that met the dying replica: HAProxy answers 50x while it notices
            return False
    wait_for(survivor_serves, 30, "the upload through the surviving node")
    assert "wagtail" in STATE, "the Wagtail site's image failed"
    _, urls, body = STATE["wagtail"]
    assert wait_for(lambda: rendition(spec.https_port(1), urls[0], (120, 80)), 30, "the rendition") == body
    assert wait_for(lambda: rendition(spec.https_port(1), urls[1], (60, 40)), 30, "a new rendition")
