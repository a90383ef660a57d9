"""Issues 9 and 13: a change of the proxy's configuration under load on the single node (host-mode ports) is a
seamless reload of the running proxy, not a replacement of its task: 0 failed requests over HTTPS (kept-alive and
new connections), the new configuration answers, and the proxy container is the same one.
Runs on the session's lab stack after test_https_lab (same CA, same stack); puts the env file back.
"""

from __future__ import annotations

import urllib.request

import pytest

from shiphelpers import Site, docker
from test_https_lab import deploy, loads, poll, stop, serving  # noqa: F401 (serving: fixture)

pytestmark = [pytest.mark.lab, pytest.mark.engine]


def proxy_containers(env) -> list[str]:
    return sorted(docker("ps", "-q", "--no-trunc", "--filter",
                         f"label=com.docker.swarm.service.name={env.stack}_proxy").stdout.split())


def hsts(env) -> str:
    site = Site(env)
    with site.opener.open(urllib.request.Request(site.base + "/health/"), timeout=10) as resp:
        return resp.headers.get("Strict-Transport-Security", "")


def test_a_proxy_configuration_change_under_load_reloads_the_running_proxy_without_a_failed_request(env, serving):
    before, good = proxy_containers(env), dict(env.extra)
    assert before and hsts(env) == "max-age=3600"
    gens = loads(env, env.tls_context(), seconds=300)
    try:
        env.write(HSTS_MAX_AGE="7200")   # rendered into haproxy.cfg (and the app's settings)
        deploy(env, serving)
        assert hsts(env) == "max-age=7200"   # the deploy waited until every proxy runs the new configuration
        poll("more load after the reload", lambda: all(g.stats.sent > 0 for g in gens), timeout=10)
    finally:
        stats = stop(gens)   # 0 failed requests, 0 non-2xx, >= 50 requests/s
        env.extra.clear()
        env.extra.update(good)
        env.write()
    assert stats[0].sent and stats[1].sent
    assert proxy_containers(env) == before, "the proxy task was replaced instead of reloaded"
    logs = docker("service", "logs", "--raw", f"{env.stack}_proxy", check=False).stdout
    assert "reloading the proxy with configuration" in logs, logs[-3000:]
    # The env file is the session's again; the next test's deploy reloads the proxies back to it.


def service_image(env, name: str) -> str:
    return docker("service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
                  f"{env.stack}_{name}").stdout.strip()


def print_edge(env) -> None:
    """What the edge's tasks did, for a failed handover: each service's tasks, then the last lines of its logs."""
    for name in ("relay", "proxy", "certs"):
        service = f"{env.stack}_{name}"
        print(docker("service", "ps", "--no-trunc", "--format", "{{.Name}} {{.Image}} {{.CurrentState}} {{.Error}}",
                     service, check=False).stdout)
        print(docker("service", "logs", "--raw", "--timestamps", "--tail", "60", service, check=False).stdout)


def test_a_proxy_image_change_under_load_on_one_node_hands_the_ports_over_without_a_failed_request(env, serving):
    """PROXY_IMAGE changes (the same HAProxy under a new name): the relay (which is PROXY_IMAGE), the proxy and the
    certs service (the edge image built FROM it) are all replaced in one deploy, on the node's host-mode ports."""
    renamed = f"djdeploy-test/haproxy:relay-{env.stack}"
    good = dict(env.extra)
    old = env.cfg().proxy_image
    docker("tag", old, renamed)
    before = {name: service_image(env, name) for name in ("relay", "proxy", "certs")}
    gens = loads(env, env.tls_context(), seconds=300)
    try:
        env.write(PROXY_IMAGE=renamed)
        deploy(env, serving)
        poll("more load after the handover", lambda: all(g.stats.sent > 0 for g in gens), timeout=10)
        after = {name: service_image(env, name) for name in before}
    finally:
        try:
            stats = stop(gens)   # 0 failed requests, 0 non-2xx, >= 50 requests/s
        except AssertionError:
            print_edge(env)
            raise
        env.extra.clear()
        env.extra.update(good)
        env.write()
    assert stats[0].sent and stats[1].sent
    assert after["relay"] == renamed and all(after[n] != before[n] for n in before), (before, after)
    logs = docker("service", "logs", "--raw", f"{env.stack}_proxy", check=False).stdout
    assert "starting from its servers' state" in logs, logs[-3000:]
    # The env file is the session's again; the next deploy hands the ports back to the session's image.
    docker("rmi", renamed, check=False)
