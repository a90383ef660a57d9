"""The same `inv deploy` on the three-node lab cluster: replicas on several nodes, a proxy on every node serving
HTTPS with the cluster CA's certificate, a rolling update under load (over HTTPS) spread over the nodes' loopback
ports, three crashes of a worker, Postgres data that survives, a rollback. One stack per session; the tests build on
each other and run in file order.

Asset bridging (issue 13) rides along: every release is built from a scratch context with its own CSS and JS
(tests/ship/assetclient.py), and during the rolling update and the rollback browser-like clients on every node load
each page and every /static/ file it references: 0 failed, 0 non-2xx; afterwards every hashed file referenced
answers 200 from each app task on each node directly (no proxy retry to hide a miss).

The database runs as the stack's ``db`` service pinned to the manager (node 1) with its volume in node 1's
engine (deploy.lab.cluster_env explains why)."""

from __future__ import annotations

import io
import re
import socket
import sys
import time
import urllib.error
from collections import Counter
from pathlib import Path

import pytest

from .conftest import NodeSite, node_docker, poll, sh
from assetclient import TASK_SCRIPT, Browser, assets, deploy_release, statuses, summary

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.cluster
STATE: dict = {}


def get(e, i: int, path: str = "/health/", timeout: float = 5.0) -> tuple[int, str, str]:
    """(status, X-App-Version, body) of a GET to node i's HTTPS port; (0, "", reason) when it cannot connect."""
    site = NodeSite(e, i)
    try:
        with site.opener.open(site.base + path, timeout=timeout) as resp:
            return resp.status, resp.headers.get("X-App-Version", ""), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, "", ""
    except OSError as exc:
        return 0, "", str(exc)


def add_note(e, i: int, text: str) -> None:
    """POST a note on node i like a browser (CSRF cookie, token and Origin), and see it listed."""
    NodeSite(e, i).add_note(text)


def served_serials(e) -> dict:
    """The serial of the certificate each node's HTTPS port serves (the SNI name verified against the CA root)."""
    from loadgen import serial_of

    out = {}
    for i in e.spec.numbers:
        with e.tls_context().wrap_socket(socket.create_connection(("127.0.0.1", e.spec.https_port(i)), timeout=10),
                                         server_hostname=e.host) as s:
            out[i] = serial_of(s)
    return out


def placement(spec, service: str) -> list[str]:
    """Nodes of the service's running tasks (one entry per task)."""
    out = node_docker(spec, 1, "service", "ps", "--filter", "desired-state=running", "--format",
                      "{{.Node}}\t{{.CurrentState}}", service, check=False).stdout
    return sorted(line.split("\t")[0] for line in out.splitlines() if "\tRunning" in line)


def loads(e, nodes, seconds=240):
    """One generator per node's loopback HTTPS port, every other one with keep-alive; about 72 requests/s in total."""
    sys.path.insert(0, str(ROOT / "bench"))
    from loadgen import LoadGenerator

    rate, spec = 72 / len(nodes), e.spec
    return {i: LoadGenerator(spec.https_port(i), "/", rate=rate, seconds=seconds, keepalive=k % 2 == 1,
                             host_header=f"{e.host}:{spec.https_port(i)}", tls=e.tls_context()).start()
            for k, i in enumerate(nodes)}


def stop(gens):
    stats = {i: g.stop() for i, g in gens.items()}
    for i, s in stats.items():
        print(f"load on node {i}:", s.summary())
    return stats


def asset_browsers(e) -> dict:
    """One browser-like client per node's HTTPS port: a page and every /static/ file it references, 5 pages/s."""
    return {i: Browser(e.spec.https_port(i), threads=1, host=e.host, tls=e.tls_context(), pause=0.2)
            for i in e.spec.numbers}


def on_every_task(e, paths: set) -> dict:
    """{path: {statuses}} of each path asked of each running app task directly (127.0.0.1:8000 inside it)."""
    seen, tasks = {}, 0
    for i in e.spec.numbers:
        ids = node_docker(e.spec, i, "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={e.stack}_app").stdout.split()
        for cid in ids:
            tasks += 1
            out = node_docker(e.spec, i, "exec", cid, "python3", "-c", TASK_SCRIPT, e.host, *sorted(paths))
            statuses(out.stdout, seen)
    assert tasks == e.cfg().replicas, tasks
    return seen


def finish(browsers: dict) -> dict:
    return {i: b.finish() for i, b in browsers.items()}


def assets_answered(e, results: dict, versions: set, earlier: set = frozenset()) -> set:
    """Every answer the browsers got was a 200, pages of ``versions`` were loaded (both releases' CSS and JS
    referenced), and every hashed file seen now or ``earlier`` answers 200 on every app task. Returns the files."""
    for i, r in results.items():
        print(f"assets on node {i}: {summary(r)}")
        assert [x for x in r if x[1] != 200] == [], f"node {i}: {summary(r)}"
        assert len(r) > 20, f"node {i}: too few requests to prove anything ({len(r)})"
    everything = [x for r in results.values() for x in r]
    seen = assets(everything)
    assert versions <= {v for _, _, v in everything}, "pages of both releases were loaded"
    assert len(seen) >= 4, seen
    seen |= earlier
    assert on_every_task(e, seen) == {p: {200} for p in seen}
    return seen


def test_v1_runs_replicas_on_several_nodes_and_every_node_serves(cenv):
    spec = cenv.spec
    deploy_release(cenv, "v1", tail=3000)
    v1 = cenv.tags[-1]
    app_nodes = placement(spec, cenv.service("app"))
    assert len(app_nodes) == 4 and len(set(app_nodes)) >= 2, app_nodes
    assert placement(spec, cenv.service("db")) == [spec.node(1)]
    assert placement(spec, cenv.service("proxy")) == [spec.node(i) for i in spec.numbers]
    for i in spec.numbers:
        poll(f"node {i}'s HTTPS port to serve {v1}", lambda i=i: get(cenv, i)[:2] == (200, v1), 60)
    cenv.serials = served_serials(cenv)
    assert len(set(cenv.serials.values())) == 1, f"the nodes' proxies serve different certificates: {cenv.serials}"
    add_note(cenv, 2, "note-before-v2")
    STATE.update(v1=v1)


def test_status_shows_which_node_runs_which_replica(cenv):
    assert "v1" in STATE, "needs v1 deployed"
    res = cenv.inv("status", "--env", "cluster", timeout=60)
    print(res.stdout, res.stderr)
    assert res.returncode == 0
    rows = [line for line in res.stdout.splitlines() if cenv.service("app") in line]
    nodes = {n for n in (cenv.spec.node(i) for i in cenv.spec.numbers) if any(n in r for r in rows)}
    assert len(nodes) >= 2, "inv status --env must show the app's replicas on at least two nodes"


def test_rolling_update_under_load_over_all_nodes_has_no_failed_request_nor_a_missing_asset(cenv):
    assert "v1" in STATE, "needs v1 deployed"
    spec = cenv.spec
    gens, browsers = loads(cenv, list(spec.numbers)), asset_browsers(cenv)
    time.sleep(2)
    try:
        outcome, _ = deploy_release(cenv, "v2", tail=2000)  # new CSS and JS
        time.sleep(2)
    finally:
        stats, results = stop(gens), finish(browsers)
    v2 = cenv.tags[-1]
    STATE.update(assets=assets_answered(cenv, results, {STATE["v1"], v2}))
    total = sum(s.sent for s in stats.values()) / max(s.seconds for s in stats.values())
    assert total >= 50, f"{total:.1f} requests/s"
    for i, s in stats.items():
        assert (s.failed, s.non2xx) == (0, 0), f"node {i}: {s.summary()}"
        assert s.order == [STATE["v1"], v2], f"node {i}: {s.summary()}"
    print(f"a CSS and JS change deployed to the cluster in {outcome.seconds:.1f}s under {total:.0f} req/s")
    STATE.update(v2=v2, v2_seconds=outcome.seconds)


def node_ready(spec, i: int) -> bool:
    return f"{spec.node(i)} Ready" in node_docker(spec, 1, "node", "ls", "--format", "{{.Hostname}} {{.Status}}",
                                                   check=False).stdout


def crash_a_worker(e, app: str, during=None):
    """`docker kill` the worker running the most app replicas (no FIN, no RST: its tasks vanish mid-request) while
    ~72 requests/s go to the two other nodes' ports; wait until its replicas run on the survivors, call ``during``
    with the node still lost, then bring it back under the same load: docker start, Ready, its proxy serving what
    the survivors serve. Returns (victim, {survivor: Stats}, {phase: seconds since the kill}, during's result)."""
    spec = e.spec
    on = Counter(placement(spec, app))
    victim = max((2, 3), key=lambda i: on[spec.node(i)])
    assert on[spec.node(victim)] >= 1, f"no app replica on a worker to crash: {dict(on)}"
    survivors = [i for i in spec.numbers if i != victim]
    gens, times, result = loads(e, survivors, seconds=400), {}, None
    try:
        poll("load flowing to the survivors", lambda: all(g.stats.ok for g in gens.values()), 10, 0.1)
        killed = time.monotonic()
        sh("docker", "kill", spec.node(victim))
        poll(f"the app's 4 replicas running without {spec.node(victim)}",
             lambda: (p := placement(spec, app)) and len(p) == 4 and spec.node(victim) not in p, 90, 0.25)
        times["rescheduled"] = time.monotonic() - killed
        if during is not None:
            result = during()
            times["during"] = time.monotonic() - killed
        res = sh("docker", "start", spec.node(victim), check=False)
        assert res.returncode == 0, res.stderr
        poll(f"{spec.node(victim)} Ready again", lambda: node_ready(spec, victim), 90, 0.25)
        times["ready"] = time.monotonic() - killed
        serving = get(e, survivors[0])[1]
        poll(f"node {victim}'s proxy to serve {serving} again over HTTPS",
             lambda: get(e, victim, timeout=2)[:2] == (200, serving), 90, 0.25)
        times["serving"] = time.monotonic() - killed
    finally:
        stats = stop(gens)
    return victim, stats, times, result


def crash_round(cenv, n: int, v3: str) -> None:
    """Crash n+1 of 3 (the first one deploys v3 with the node lost): >= 50 requests/s, 0 failed, 0 non-2xx."""
    deploy = (lambda: deploy_release(cenv, "v3", tail=2000)) if n == 0 else None  # asserts the deploy's success
    victim, stats, times, _ = crash_a_worker(cenv, cenv.service("app"), during=deploy)
    print(f"crash {n + 1}: killed {cenv.spec.node(victim)}; seconds after the kill: "
          + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
    total = sum(s.sent for s in stats.values()) / max(s.seconds for s in stats.values())
    assert total >= 50, f"crash {n + 1}: {total:.1f} requests/s"
    for i, s in stats.items():
        assert (s.failed, s.non2xx) == (0, 0), f"crash {n + 1}, node {i}: {s.summary()}"
        assert s.order == ([STATE["v2"], v3] if n == 0 else [v3]), f"crash {n + 1}, node {i}: {s.summary()}"


def test_crashing_a_worker_three_times_loses_no_request_to_the_survivors_and_a_deploy_succeeds(cenv):
    """A node crash, three times in a row (a worker is killed, not stopped: a GET already delivered to one of its
    tasks is retried on another task once TCP keepalives find the connection dead, deploy/ship/edge_cfg.py).
    The first crash also deploys v3 while the node is lost."""
    assert "v2" in STATE, "needs v2 deployed"
    spec, v3 = cenv.spec, f"{cenv.stack}-v3"  # deploy_release names (and registers) it
    # Swarm declares a silent node down after missed heartbeats (period 5 s by default: ~20 s). 2 s here saves CI
    # time and changes nothing the proxies do (their health checks find the dead tasks within 2 s).
    node_docker(spec, 1, "swarm", "update", "--dispatcher-heartbeat", "2s")
    try:
        for n in range(3):
            crash_round(cenv, n, v3)
    finally:
        node_docker(spec, 1, "swarm", "update", "--dispatcher-heartbeat", "5s", check=False)
    STATE.update(v3=v3)


def test_postgres_data_survived_everything(cenv):
    assert "v3" in STATE, "needs the earlier steps"
    for i in cenv.spec.numbers:
        status, version, body = get(cenv, i, "/")
        assert (status, version) == (200, STATE["v3"]) and "note-before-v2" in body


def stack_images(spec, i: int, digests: set) -> set:
    """The image IDs on node i that are releases of this stack (pulled by digest: no tag)."""
    out = node_docker(spec, i, "image", "ls", "--digests", "--format", "{{.ID}}\t{{.Digest}}",
                      "127.0.0.1:5000/djapp", check=False).stdout
    return {line.split("\t")[0] for line in out.splitlines() if line.partition("\t")[2] in digests}


def stopped_tasks(spec, i: int, stack: str) -> list:
    return node_docker(spec, i, "ps", "-aq", "--filter", "status=exited", "--filter",
                       f"label=com.docker.stack.namespace={stack}", check=False).stdout.split()


def test_prune_frees_the_old_release_on_every_node_and_in_the_registry(cenv):
    from deploy.ops import prune_registry

    releases = [STATE[n] for n in ("v1", "v2", "v3") if n in STATE]
    assert len(releases) >= 2, "needs v1 and v2 deployed"
    spec, cfg = cenv.spec, cenv.cfg()
    digests = prune_registry.digests(cfg, releases)
    old, kept = {digests[releases[0]]}, {digests[r] for r in releases[1:]}
    before = {i: (stack_images(spec, i, old), stack_images(spec, i, kept)) for i in spec.numbers}
    had_v1 = [i for i in spec.numbers if before[i][0]]
    assert len(had_v1) >= 2, before  # v1's four replicas ran on several nodes
    res = cenv.inv("prune", "--env", "cluster", "--keep", str(len(releases) - 1), timeout=600)
    print(res.stdout[-4000:], res.stderr[-2000:])
    assert res.returncode == 0 and f"keeping releases: {', '.join(reversed(releases[1:]))}" in res.stdout
    for i in spec.numbers:
        line = re.search(rf"^node {spec.node(i)}: removed (\d+) image\(s\)", res.stdout, re.M)
        assert line and int(line.group(1)) == len(before[i][0]), f"node {i}: {res.stdout[-3000:]}"
        # every kept release's image stays (the prune job itself runs the serving image, so a node may gain it)
        assert stack_images(spec, i, old) == set() and stack_images(spec, i, kept) >= before[i][1]
        assert stopped_tasks(spec, i, cenv.stack) == [], f"node {i} still has stopped tasks of the stack"
    print("images of the old release per node before -> after:", {i: len(before[i][0]) for i in spec.numbers}, "-> 0")
    assert releases[0] not in prune_registry.tags(cfg) and set(releases[1:]) <= set(prune_registry.tags(cfg))
    for i in spec.numbers:
        assert get(cenv, i, "/")[:2] == (200, releases[-1])


def test_a_rollback_under_load_keeps_every_referenced_file_on_every_task(cenv):
    """Back to v2 (kept by the prune) while browser-like clients load pages and their files on every node: the
    rollback's image carries v3's hashed files too (deploy.image.bridge), so an open v3 page still gets its CSS/JS."""
    from deploy.ship import executor

    assert "v3" in STATE and "assets" in STATE, "needs the earlier steps"
    browsers, out = asset_browsers(cenv), io.StringIO()
    try:
        time.sleep(1)
        outcome = executor.rollback(cenv.cfg(), to=STATE["v2"], out=out)
        time.sleep(2)
    finally:
        results = finish(browsers)
    print(out.getvalue()[-2500:])
    assert outcome.result == "ok"
    assets_answered(cenv, results, {STATE["v3"], STATE["v2"]}, STATE["assets"])
    for i in cenv.spec.numbers:
        assert get(cenv, i, "/")[:2] == (200, STATE["v2"]), f"node {i}"
