"""Asset bridging on the lab (issue 13): a release that changes CSS and JS is deployed, then rolled back, while
clients load each page and every static file it references, as a browser does.

Proven: 0 failed requests and 0 non-2xx during the rollout and the rollback; afterwards every hashed file referenced
during the test answers 200 through the proxy AND from each app task directly (docker exec, no proxy retry to hide a
miss), with immutable caching; a miss of a hashed name is never cacheable. One plain-HTTP stack (no CA: TLS is not
what is under test; the static backend is rendered the same for both modes, tests/unit/test_edge_cfg.py).
"""

from __future__ import annotations

import http.client
import io
import re
import secrets
import time

import pytest

from assetclient import (HASHED, LINK, TASK_SCRIPT, Browser, assets, deploy_release, scratch_context,
                         statuses, summary)
from shiphelpers import Env, docker, dump_logs, free_port, remove_stack

pytestmark = [pytest.mark.lab, pytest.mark.engine]


@pytest.fixture(scope="module")
def site(lab, tmp_path_factory, request):
    """A plain-HTTP lab environment (2 replicas) and a scratch build context; everything removed at the end."""
    tmp = tmp_path_factory.mktemp("assetsenv")
    e = Env.__new__(Env)   # no ACME CA: plain HTTP (TLS_MODE=external)
    e.stack, e.port, e.https_port, e.dir, e.tls, e.tags = "djtest" + secrets.token_hex(3), free_port(), free_port(), tmp, None, []
    e.key_file = tmp / "django_secret_key"
    e.key_file.write_text(secrets.token_urlsafe(50))
    e.extra = {"DJANGO_SECRET_KEY_FILE": str(e.key_file), "CONVERGE_TIMEOUT": "180", "REPLICAS": "2"}
    e.write()
    e.ctx = scratch_context(tmp_path_factory.mktemp("assetsctx"))
    e.state = {}
    try:
        yield e
        if request.session.testsfailed:
            dump_logs(e.stack)
    finally:
        remove_stack(e.stack)
        from deploy.lab import paths

        for tag in e.tags + [t + "-static" for t in e.tags]:   # -static: the rollback's bridged image
            for ref in (f"djapp:{tag}", f"{paths.REGISTRY}/djapp:{tag}"):
                docker("rmi", ref, check=False)


def deploy(e, name: str):
    return deploy_release(e, name)


def on_every_task(e, paths: set) -> dict:
    """status of each path, asked of each running app task directly (127.0.0.1:8000 inside it): {path: {statuses}}."""
    cfg = e.cfg()
    ids = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={e.stack}_app").stdout.split()
    assert len(ids) == cfg.replicas, ids
    seen: dict = {}
    for cid in ids:
        statuses(docker("exec", cid, "python3", "-c", TASK_SCRIPT, cfg.health_host, *sorted(paths)).stdout, seen)
    return seen


def under_load(e, action):
    browser = Browser(e.port)
    try:
        time.sleep(1)   # a few pages of the serving release first
        result = action()
        time.sleep(2)   # and of the new one after the switch
    finally:
        results = browser.finish()
    print("browser:", summary(results))
    return result, results


def test_first_release_has_nothing_to_bridge_and_caches_hashed_files_for_a_year(site):
    outcome, log = deploy(site, "r1")
    build = next(r for r in outcome.records if r.step.kind == "build")
    assert build.note.endswith("no previous release to bridge"), build.note
    conn = http.client.HTTPConnection("127.0.0.1", site.port, timeout=10)
    conn.request("GET", "/", headers={"Host": "127.0.0.1"})
    page = conn.getresponse().read().decode()
    css = next(p for p in LINK.findall(page) if p.endswith(".css") and HASHED.search(p))
    for path, status, cache in ((css, 200, "public, max-age=31536000, immutable"),
                                (css.replace("/app.", "/gone."), 404, "no-store"),
                                ("/static/notes/app.css", 200, "public, max-age=60")):
        conn.request("GET", path, headers={"Host": "127.0.0.1"})
        resp = conn.getresponse()
        resp.read()
        assert (resp.status, resp.getheader("Cache-Control")) == (status, cache), path
    site.state["r1"] = {css}


def test_css_and_js_change_under_load_every_file_answers_during_and_after(site):
    if "r1" not in site.state:
        pytest.skip("needs the first release")
    (outcome, log), results = under_load(site, lambda: deploy(site, "r2"))
    build = next(r for r in outcome.records if r.step.kind == "build")
    assert re.search(r"\+2 hashed static files of \S+-r1$", build.note), build.note
    bad = [r for r in results if r[1] != 200]
    assert not bad, summary(results)
    seen = assets(results)
    versions = {v for _, _, v in results}
    assert {f"{site.stack}-r1", f"{site.stack}-r2"} <= versions, versions   # pages of both releases were loaded
    assert site.state["r1"] <= seen and len(seen) >= 4, seen                # both releases' CSS and JS
    statuses = on_every_task(site, seen)
    assert statuses == {p: {200} for p in seen}, statuses
    site.state["r2"] = seen


def test_rollback_under_load_keeps_every_referenced_file(site):
    from deploy.ship import executor

    if "r2" not in site.state:
        pytest.skip("needs the second release")
    out = io.StringIO()
    outcome, results = under_load(site, lambda: executor.rollback(site.cfg(), to=site.tags[0], out=out))
    print(out.getvalue())
    assert outcome.result == "ok"
    bad = [r for r in results if r[1] != 200]
    assert not bad, summary(results)
    seen = site.state["r2"] | assets(results)
    statuses = on_every_task(site, seen)
    assert statuses == {p: {200} for p in seen}, statuses
