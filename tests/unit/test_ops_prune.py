"""deploy.ops.prune: what is kept (rollback targets, anything in use, other stacks' images), the lock, the
dry run, every message verbatim. A fake manager; no engine."""

import io
import json

import pytest
from invoke import Result

from deploy.core.errors import ToolkitError
from deploy.core.runner import Runner
from deploy.ops import prune
from shipfakes import FakeManager, make_cfg

AUDIT = "\n".join(f"2026-12-0{i}T00:00:00Z who=x action=deploy env=lab git=- image=127.0.0.1:5000/djapp:{tag} "
                  f"digest=- tree=clean result={res}" for i, (tag, res) in
                  enumerate([("v1", "ok"), ("v2", "ok"), ("v3", "failed"), ("v4", "ok"), ("v1", "ok")], 1)) + "\n"
SPEC = json.dumps({"Image": "127.0.0.1:5000/djapp:v4@sha256:ab", "Secrets": [{"SecretName": "djt_db_1"}],
                   "Configs": [{"ConfigName": "djt_haproxy_2"}]})
IMAGES = "".join(f"127.0.0.1:5000/djapp:{t}\t149MB\n" for t in ("v1", "v2", "v3", "v4", "other-stack"))


@pytest.fixture
def cfg(tmp_path):
    return make_cfg(tmp_path)


def manager(lock_ok=True):
    return FakeManager([
        ("mkdir \"$2\"", Result() if lock_ok else Result(exited=1, stderr="mkdir: File exists")),
        ("lock/owner", Result(stdout="alice@laptop pid=7 action=deploy\n")),
        ("tail -n", Result(stdout=AUDIT)), ("service ls --quiet", Result(stdout="id1\n")),
        ("ContainerSpec", Result(stdout=SPEC + "\n")), ("image ls", Result(stdout=IMAGES)),
        ("status=exited", Result(stdout="c1\nc2\n")),
        ("secret ls", Result(stdout="djt_db_1\ndjt_db_0\n")), ("config ls", Result(stdout="djt_haproxy_2\ndjt_haproxy_1\n"))])


def test_keep_tags_are_the_last_distinct_successful_releases():
    from deploy.ship.swarm import parse_audit

    rows = parse_audit(AUDIT)
    assert prune.keep_tags(rows, 2) == ["v1", "v4"] and prune.keep_tags(rows, 3) == ["v1", "v4", "v2"]
    assert prune.deployed_tags(rows) == {"v1", "v2", "v3", "v4"}


def test_prune_removes_only_unused_non_targets_of_this_environment(cfg):
    m = manager()
    out = io.StringIO()
    todo = prune.prune(cfg, Runner(ctx=m, where="m", out=io.StringIO()), 2, False, "me action=prune\n", out=out)
    assert todo["images"] == [("127.0.0.1:5000/djapp:v2", "149MB"), ("127.0.0.1:5000/djapp:v3", "149MB")]
    assert (todo["containers"], todo["secrets"], todo["configs"]) == (["c1", "c2"], ["djt_db_0"], ["djt_haproxy_1"])
    cmds = m.commands()
    assert "docker image rm 127.0.0.1:5000/djapp:v2" in cmds and "docker image rm 127.0.0.1:5000/djapp:v3" in cmds
    assert not any("other-stack" in c and " rm " in c for c in cmds)
    assert "docker secret rm djt_db_0" in cmds and "docker config rm djt_haproxy_1" in cmds
    assert cmds[-1] == "rm -rf /var/lib/djdeploy/djt/lock"
    assert out.getvalue().splitlines() == [
        "keeping releases: v1, v4 (and whatever a service uses)",
        "removing image 127.0.0.1:5000/djapp:v2 (149MB)", "removing image 127.0.0.1:5000/djapp:v3 (149MB)",
        "removing 2 unused container(s): c1 c2", "removing 1 unused secret(s): djt_db_0",
        "removing 1 unused config(s): djt_haproxy_1"]


def test_dry_run_removes_nothing(cfg):
    m = manager()
    out = io.StringIO()
    prune.prune(cfg, Runner(ctx=m, where="m", out=io.StringIO()), 1, True, "me\n", out=out)
    assert not any(" rm " in c for c in m.commands()[:-1]) and "would remove image 127.0.0.1:5000/djapp:v2" in out.getvalue()
    assert "would remove image 127.0.0.1:5000/djapp:v4" not in out.getvalue()  # in use by the service


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
