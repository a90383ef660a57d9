"""deploy.ops.prune: what is kept (rollback targets, anything in use, other stacks' images), the order (nodes,
swarm objects, registry, GC), the lock, the dry run, every message verbatim. A fake manager and a fake
registry; no engine."""

import dataclasses
import io
import json

import pytest
from invoke import Result

from deploy.core.errors import ToolkitError
from deploy.core.runner import Runner
from deploy.ops import prune, prune_registry
from fakeregistry import FakeRegistry, digest
from shipfakes import FakeManager, make_cfg

AUDIT = "\n".join(f"2026-12-0{i}T00:00:00Z who=x action=deploy env=lab git=- image=127.0.0.1:5000/djapp:{tag} "
                  f"digest=- tree=clean result={res}" for i, (tag, res) in
                  enumerate([("v1", "ok"), ("v2", "ok"), ("v3", "failed"), ("v4", "ok"), ("v1", "ok")], 1)) + "\n"
SPECS = "djt_app\t" + json.dumps({"Image": "127.0.0.1:5000/djapp:v1@sha256:" + "a" * 64,
                                     "Secrets": [{"SecretName": "djt_db_1"}], "Configs": [{"ConfigName": "djt_haproxy_2"}]})
NODE = ('DJDEPLOY-PRUNE {"node": "n1", "containers": 2, "images": [["127.0.0.1:5000/djapp:v2", 149000000, "removed"]], '
        '"before": 3000000000, "after": 2851000000}')


@pytest.fixture
def cfg(tmp_path):
    return make_cfg(tmp_path)


@pytest.fixture
def reg():
    r = FakeRegistry({"v1": digest(1), "v2": digest(2), "v3": digest(3), "v4": digest(4), "other": digest(9)})
    yield r
    r.close()


def manager(lock_ok=True, specs=SPECS):
    return FakeManager([
        ("mkdir \"$2\"", Result() if lock_ok else Result(exited=1, stderr="mkdir: File exists")),
        ("lock/owner", Result(stdout="alice@laptop pid=7 action=deploy\n")),
        ("tail -n", Result(stdout=AUDIT)), ("service ls --quiet", Result(stdout="id1\n")),
        ("ContainerSpec", Result(stdout=specs + "\n")), ("service ps", Result(stdout="n1\tComplete 1 second ago\t\n")),
        ("service logs", Result(stdout=NODE + "\n")), ("node ls", Result(stdout="n1\tReady\tActive\n")),
        ("secret ls", Result(stdout="djt_db_1\ndjt_db_0\n")), ("config ls", Result(stdout="djt_haproxy_2\ndjt_haproxy_1\n"))])


def test_keep_tags_are_the_last_distinct_successful_releases():
    from deploy.ship.swarm import parse_audit

    rows = parse_audit(AUDIT)
    assert prune.keep_tags(rows, 2) == ["v1", "v4"] and prune.keep_tags(rows, 3) == ["v1", "v4", "v2"]
    assert prune.deployed_tags(rows) == {"v1", "v2", "v3", "v4"}


def test_prune_runs_the_job_on_every_node_removes_objects_then_registry_manifests_then_gc(cfg, reg):
    cfg = dataclasses.replace(cfg, registry=reg.address)
    m, out, collected = manager(), io.StringIO(), []
    todo = prune.prune(cfg, Runner(ctx=m, where="m", out=io.StringIO()), 2, False, "me action=prune\n", out=out,
                       gc=lambda blobs, o: collected.append(sorted(blobs)))
    assert (todo["kept"], todo["remove"], todo["secrets"], todo["configs"]) == (
        ["v1", "v4"], {"v2", "v3"}, ["djt_db_0"], ["djt_haproxy_1"])
    assert todo["keep_digests"] == {"sha256:" + "a" * 64}  # the audit has no digests here: what the service runs
    cmds = m.commands()
    create = next(c for c in cmds if "service create" in c)
    assert f"--entrypoint python3 {reg.address.split(':')[0]}:5000/djapp:v1@sha256:{'a' * 64} -c" in create
    assert '"remove_tags":["v2","v3"]' in create and "docker secret rm djt_db_0" in cmds
    assert "docker config rm djt_haproxy_1" in cmds and cmds[-1] == "rm -rf /var/lib/djdeploy/djt/lock"
    assert sorted(reg.deleted) == [digest(2), digest(3)] and len(collected) == 1 and digest(2) in collected[0]
    assert out.getvalue().splitlines() == [
        "keeping releases: v1, v4 (and whatever a service uses)",
        "node n1: removed 1 image(s) and 0 tag(s), 2 stopped task container(s), freed 149.0 MB (layers 3.0 GB -> 2.9 GB)",
        "  removed 127.0.0.1:5000/djapp:v2 (149.0 MB)",
        "removing 1 unused secret(s): djt_db_0", "removing 1 unused config(s): djt_haproxy_1",
        f"registry {reg.address}: deleting djapp:v2 (sha256:222222222222)",
        f"registry {reg.address}: deleting djapp:v3 (sha256:333333333333)",
        f"registry {reg.address}: deleted 2 manifest(s) (2 tag(s)); 3 tag(s) of djapp stay"]


def test_without_a_gc_the_operator_is_told_and_dry_run_removes_nothing(cfg, reg):
    cfg = dataclasses.replace(cfg, registry=reg.address)
    out = io.StringIO()
    prune.prune(cfg, Runner(ctx=manager(), where="m", out=io.StringIO()), 2, False, "me\n", out=out)
    assert out.getvalue().endswith(prune_registry.operator_note(cfg))
    m, out = manager(), io.StringIO()
    reg.deleted.clear()
    prune.prune(cfg, Runner(ctx=m, where="m", out=io.StringIO()), 1, True, "me\n", out=out, gc=pytest.fail)
    assert not any(c.startswith(("docker secret rm", "docker config rm")) for c in m.commands())
    assert '"dry_run":true' in next(c for c in m.commands() if "service create" in c) and reg.deleted == []
    assert "would remove 1 unused secret(s): djt_db_0" in out.getvalue()
    assert out.getvalue().splitlines()[-2:] == [  # v2 and v3 went in the real run above
        f"registry {reg.address}: would delete djapp:v4 (sha256:444444444444)",
        f"registry {reg.address}: would delete 1 manifest(s) (1 tag(s)); 2 tag(s) of djapp stay"]


def test_prune_without_the_app_service_is_refused_and_unlocks(cfg):
    m = manager(specs="djt_db\t" + json.dumps({"Image": "postgres:17"}))
    with pytest.raises(ToolkitError) as err:
        prune.prune(cfg, Runner(ctx=m, where="m", out=io.StringIO()), 2, False, "me\n")
    assert str(err.value) == ("prune needs the app service djt_app (its image runs the prune job on every node); "
                              "deploy first (`inv deploy --env lab`); nothing was removed")
    assert m.commands()[-1] == "rm -rf /var/lib/djdeploy/djt/lock" and not any("create" in c for c in m.commands())


def test_prune_during_a_deploy_is_refused_naming_the_holder(cfg):
    m = manager(lock_ok=False)
    with pytest.raises(ToolkitError) as err:
        prune.prune(cfg, Runner(ctx=m, where="m", out=io.StringIO()), 2, False, "me\n")
    assert str(err.value) == ("prune refused: the deploy lock /var/lib/djdeploy/djt/lock is held by: alice@laptop pid=7 "
                              "action=deploy; wait for that deploy to finish (or `inv unlock --env lab` if it is stale)")
    assert not any(" rm " in c for c in m.commands())
    with pytest.raises(ToolkitError) as err:
        prune.prune(cfg, Runner(ctx=m, where="m", out=io.StringIO()), 0, False, "me\n")
    assert str(err.value) == "--keep 0: keep at least 1 release (the one serving), e.g. --keep 3"
