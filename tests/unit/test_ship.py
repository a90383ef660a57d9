"""deploy.ship.executor: a real run executes exactly the plan's steps and times each; the lock comes before the
build and push; the release is pinned by digest; failures are one line naming the step; the audit line and the
step timings are stored. The manager is a fake Fabric connection that records every command."""

import io
import json
import socket

import paramiko
import pytest
from invoke import Result

from deploy.core.errors import ToolkitError
from deploy.ship import executor, info, registry, ssh, wait
from deploy.ship.stackfile import secret_names
from shipfakes import DIGEST, KEY, FakeManager, FakeRegistry, PENDING_RULES, builder, make_cfg, offline, remote  # noqa: F401

FINISH = ("sh -c 'IFS= read -r line; printf \"%s\\n\" \"$line\" >> \"$1\"; status=$?; cat >> \"$3\"; rm -rf \"$2\" && "
          "exit \"$status\"' finish /var/lib/djdeploy/djt/audit.log /var/lib/djdeploy/djt/lock "
          "/var/lib/djdeploy/djt/steps.jsonl")


@pytest.fixture
def cfg(tmp_path):
    return make_cfg(tmp_path)


@pytest.fixture
def reg(monkeypatch):
    return FakeRegistry(monkeypatch)


def deploy(cfg, manager, out=None, **kw):
    out = out or io.StringIO()
    kw.setdefault("tag", "v2")
    return executor.deploy(cfg, out=out, remote=remote(cfg, manager, out), **kw)


def finish_input(manager):
    text = manager.stdin_of("finish /var/lib")[0]
    line, stored = text.splitlines()
    return line, json.loads(stored)


def test_real_run_executes_exactly_the_dry_run_plan_and_times_every_step(cfg, offline, reg):
    built = []
    dry = deploy(cfg, FakeManager(), dry_run=True, builder=builder(built))
    manager, out = FakeManager(), io.StringIO()
    outcome = deploy(cfg, manager, out=out, builder=builder(built))
    assert outcome.result == "ok" and manager.closed and built == ["v2"]
    assert outcome.steps == list(outcome.plan.steps) == list(dry.plan.steps)
    assert [r.result for r in outcome.records] == ["ok"] * len(outcome.plan.steps)
    from deploy.ship import edge_cfg, edge_steps

    proxy_id = edge_steps.proxy_config_id(edge_cfg.render(cfg))   # the haproxy.cfg it put, reported by the proxy
    assert [r.note for r in outcome.records if r.step.kind == "poll"] == [
        "1 polls", f"1 polls; 1 of 1 proxies run configuration {proxy_id}", "1 polls", "1 polls"]
    text = out.getvalue()
    assert f"step timings: deploy of 127.0.0.1:5000/djapp:v2@{DIGEST} to lab: ok (27 of 27 steps ran, " in text
    assert text.splitlines()[-1].startswith(f"deploy: 127.0.0.1:5000/djapp:v2@{DIGEST} is serving on lab (")
    for secret in ("regsecret", "pgsecret", KEY):
        assert secret not in text + " ".join(manager.commands())
    assert manager.stdin_of("login --username")[0] == "regsecret\n"
    assert KEY in manager.files["/var/lib/djdeploy/djt/migrate.env"].decode()


def test_the_lock_comes_before_the_build_and_the_push(cfg, offline, reg):
    manager, order = FakeManager(), []
    built = []
    manager.rules.append(("owner=\"$(cat)\"", lambda c: (order.append(("lock", list(built), list(reg.pushed))), Result())[1]))
    deploy(cfg, manager, builder=builder(built))
    assert order == [("lock", [], [])] and reg.pushed == [("djapp:v2", "v2")]


def test_stack_file_names_the_image_by_digest_and_the_migration_runs_it(cfg, offline, reg):
    manager = FakeManager(list(PENDING_RULES))
    deploy(cfg, manager, builder=builder([]))
    spec = json.loads(manager.files["/var/lib/djdeploy/djt/stack.yml"])
    assert spec["services"]["app"]["image"] == f"127.0.0.1:5000/djapp:v2@{DIGEST}"
    assert spec["secrets"]["database_url"]["name"] == secret_names(cfg)["database_url"]
    assert set(json.loads(manager.files["/var/lib/djdeploy/djt/stack-base.yml"])["services"]) == {"db", "proxy", "certs", "relay"}
    assert [c for c in manager.commands() if "manage.py migrate" in c][0].endswith(
        f"127.0.0.1:5000/djapp:v2@{DIGEST} python manage.py migrate --noinput")


def test_audit_line_and_step_timings_are_stored_in_the_finish_step(cfg, offline, reg):
    manager = FakeManager()
    deploy(cfg, manager, builder=builder([]))
    line, stored = finish_input(manager)
    assert line.endswith(f" action=deploy env=lab git=abc1234 image=127.0.0.1:5000/djapp:v2 digest={DIGEST} "
                         "tree=clean result=ok")
    assert (stored["action"], stored["result"], stored["digest"], stored["tree"]) == ("deploy", "ok", DIGEST, "clean")
    assert [s["n"] for s in stored["steps"]] == list(range(1, 27))  # every step before the finish step itself
    assert stored["steps"][2] == {**stored["steps"][2], "kind": "build", "where": "local", "result": "ok",
                                  "note": "djapp:v2"}
    owner = manager.stdin_of("owner=\"$(cat)\"")[0]
    assert "action=deploy image=127.0.0.1:5000/djapp:v2" in owner


def test_audit_last_prints_the_stored_step_table(cfg, offline, reg, monkeypatch):
    manager = FakeManager()
    deploy(cfg, manager, builder=builder([]))
    stored = manager.stdin_of("finish /var/lib")[0].splitlines()[1]
    reader = FakeManager([("steps.jsonl", Result(stdout=stored + "\n"))])
    monkeypatch.setattr(ssh, "remote_runner", lambda cfg, out=None: remote(cfg, reader, out))
    out = io.StringIO()
    info.last_steps(cfg, out=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"step timings: deploy of 127.0.0.1:5000/djapp:v2@{DIGEST} to lab at ")
    assert lines[1] == "step   seconds  result  what"
    assert lines[2].startswith("   1  ") and lines[2].endswith(
        "  ok      [manager] run take the deploy lock /var/lib/djdeploy/djt/lock (owner line on stdin) (taken)")
    assert len(lines) == 28 and reader.commands() == ["tail -n 1 /var/lib/djdeploy/djt/steps.jsonl"]


def test_concurrent_deploy_is_refused_at_the_lock_before_anything_is_built_or_pushed(cfg, offline, reg):
    manager = FakeManager([("owner=\"$(cat)\"", Result(exited=1, stderr="mkdir: cannot create directory: File exists")),
                           ("lock/owner", Result(stdout="alice@laptop pid=42 since=T action=deploy image=x\n"))])
    built, out = [], io.StringIO()
    with pytest.raises(ToolkitError) as err:
        deploy(cfg, manager, out=out, builder=builder(built))
    assert str(err.value) == ("deploy lock /var/lib/djdeploy/djt/lock on 127.0.0.1 is held by: alice@laptop pid=42 "
                              "since=T action=deploy image=x; wait for that deploy to finish, or if it is stale "
                              "release it with `inv unlock --env lab`")
    assert built == [] and reg.pushed == []
    cmds = manager.commands()
    assert not any("rm -rf" in c or "audit.log" in c for c in cmds), "someone else's lock must not be released"
    assert not any("stack deploy" in c or "secret create" in c for c in cmds)
    assert "step timings: deploy of 127.0.0.1:5000/djapp:v2@ to lab: failed (1 of 27 steps ran" in out.getvalue()


def test_a_state_change_before_the_lock_stops_the_deploy_before_any_change(cfg, offline, reg):
    manager = FakeManager()
    reads = iter([Result(exited=1, stderr="no such service"), Result(stdout="completed T9\n")])
    manager.rules.append(("UpdateStatus.State", lambda c: next(reads)))
    built = []
    with pytest.raises(ToolkitError) as err:
        deploy(cfg, manager, builder=builder(built))
    assert str(err.value) == (
        "the environment changed between planning and taking the lock (planned: no app service yet, 0 stack secret(s), "
        "image tag not in the registry; now: app service exists (completed), 0 stack secret(s), image tag not in the "
        "registry); another deploy ran meanwhile. Nothing was changed: run the deploy again")
    assert built == [] and reg.pushed == [] and manager.commands()[-1] == FINISH


def test_no_pending_migration_skips_the_migrate_container(cfg, offline, reg):
    manager, out = FakeManager(app=True), io.StringIO()
    deploy(cfg, manager, out=out, builder=builder([]))
    assert not any("manage.py migrate" in c for c in manager.commands())
    _, stored = finish_input(manager)
    step = [s for s in stored["steps"] if s["what"].startswith("migrate the database once")][0]
    assert (step["result"], step["note"]) == ("ok", "skipped: no pending migrations")


def test_failing_migration_rolls_out_nothing_and_releases_the_lock(cfg, offline, reg):
    manager = FakeManager([("manage.py migrate", Result(exited=1, stderr="django.db.utils.ProgrammingError: boom")),
                           *PENDING_RULES])
    out = io.StringIO()
    with pytest.raises(ToolkitError) as err:
        deploy(cfg, manager, out=out, builder=builder([]))
    assert str(err.value) == ("migration failed (exit 1); nothing was rolled out: lab keeps serving the previous "
                              "version. Output:\ndjango.db.utils.ProgrammingError: boom")
    cmds = manager.commands()
    assert not any("stack.yml djt" in c for c in cmds)
    assert cmds[-2:] == ["rm -f /var/lib/djdeploy/djt/migrate.env", FINISH]
    line, stored = finish_input(manager)
    assert line.endswith("result=failed") and stored["steps"][-2]["result"] == "failed"
    assert "(22 of 27 steps ran" in out.getvalue()


def test_rolled_back_release_fails_the_deploy(cfg, offline, reg):
    states = iter(["completed T0", "completed T0", "updating T1", "rollback_started T1", "rollback_completed T1"])
    manager = FakeManager([("UpdateStatus.Message", Result(stdout="update paused due to failure of task x\n")),
                           ("UpdateStatus.State", lambda c: Result(stdout=next(states, "rollback_completed T1") + "\n"))])
    out = io.StringIO()
    with pytest.raises(ToolkitError) as err:
        deploy(cfg, manager, out=out, tag="v3", builder=builder([]))
    assert str(err.value) == (f"release 127.0.0.1:5000/djapp:v3@{DIGEST} failed on djt_app (update paused due to failure "
                              "of task x); Swarm rolled it back automatically and the previous version keeps serving")
    assert manager.commands()[-1] == FINISH
    assert "djt_app: rollback_completed" in out.getvalue()


def test_convergence_wait_times_out_with_a_message(cfg, offline, reg):
    reads = iter(range(10**6))
    manager = FakeManager([("UpdateStatus.State", lambda c: Result(stdout="completed T0\n" if next(reads) < 2 else "updating T1\n"))])
    cfg = type(cfg)(**{**cfg.__dict__, "converge_timeout": 0.2})
    with pytest.raises(ToolkitError, match=r"^timed out after 0.2s waiting for djt_app to finish its update "
                                           r"\(last state: updating\); check `inv status --env lab`$"):
        deploy(cfg, manager, builder=builder([]))
    assert manager.commands()[-1] == FINISH


def test_registry_down_fails_before_any_ssh(cfg, monkeypatch):
    monkeypatch.setattr(ssh, "open_connection", lambda cfg: pytest.fail("SSH opened with the registry down"))
    cfg = type(cfg)(**{**cfg.__dict__, "registry": "127.0.0.1:1"})
    with pytest.raises(ToolkitError, match=r"^registry 127.0.0.1:1 is not reachable \(.*\); start it or fix REGISTRY "
                                           r"in .*lab.env \(this repository's test lab: `inv lab.up --deploy`\). Nothing was "
                                           r"changed on the manager$"):
        executor.deploy(cfg, tag="v2", build=False, out=io.StringIO())


def test_unknown_rollback_tag_is_refused_before_ssh(cfg, monkeypatch):
    monkeypatch.setattr(registry, "check", lambda cfg: None)
    monkeypatch.setattr(registry, "manifest_digest", lambda cfg, tag: None)
    monkeypatch.setattr(ssh, "open_connection", lambda cfg: pytest.fail("SSH opened for an unknown tag"))
    with pytest.raises(ToolkitError) as err:
        executor.rollback(cfg, to="nope", out=io.StringIO())
    assert str(err.value) == ("unknown image tag 'nope': 127.0.0.1:5000/djapp:nope is not in the registry; push it "
                              "first (`inv push --env lab`) or pick a tag that was deployed (`inv audit --env lab`)")


def test_rollback_skips_build_push_and_migration_and_still_checks_health(cfg, offline, monkeypatch):
    reg = FakeRegistry(monkeypatch, {"v2": DIGEST})
    probes = []
    monkeypatch.setattr(wait, "probe", lambda url, host: probes.append(url) or (200, "v2"))
    manager = FakeManager(app=True)
    out = io.StringIO()
    outcome = executor.rollback(cfg, to="v2", out=out, remote=remote(cfg, manager, out))
    cmds = manager.commands()
    assert not any("migrate" in c or "stack-base" in c for c in cmds) and reg.pushed == []
    assert sum("stack deploy" in c for c in cmds) == 1
    assert "action=rollback" in finish_input(manager)[0]
    spec = json.loads(manager.files["/var/lib/djdeploy/djt/stack.yml"])
    assert spec["services"]["app"]["deploy"]["update_config"]["parallelism"] == 0
    assert outcome.result == "ok" and len(probes) == 3 and outcome.records[-2].note == "3 polls"
    assert "step timings: rollback of" in out.getvalue()


def test_ssh_connection_rejects_unknown_host_keys(cfg):
    conn = ssh.connection(cfg)
    assert isinstance(conn.client._policy, paramiko.RejectPolicy)
    assert conn.connect_timeout == cfg.connect_timeout
    kw = conn.connect_kwargs
    assert (kw["banner_timeout"], kw["auth_timeout"], kw["look_for_keys"], kw["allow_agent"]) == (10.0, 10.0, False, False)
    assert kw["key_filename"] == [cfg.ssh_key]
    assert len(conn.client.get_host_keys()) == 0 and len(conn.client._system_host_keys) == 0


@pytest.mark.parametrize("exc,text", [
    (OSError("Socket is closed"), "Socket is closed"),
    (paramiko.SSHException("SSH session not active"), "SSH session not active"),
    (socket.timeout("timed out"), "timed out"),
    (EOFError(), "EOFError"),
])
def test_ssh_lost_mid_deploy_is_one_line_naming_the_step_and_still_tries_to_release(cfg, offline, exc, text, monkeypatch):
    FakeRegistry(monkeypatch, {"v2": DIGEST})

    def lost(command):
        raise exc

    manager = FakeManager([("stack.yml djt", lost)], app=True)
    with pytest.raises(ToolkitError) as err:
        deploy(cfg, manager, build=False, migrate=False)
    assert str(err.value) == (f"step 13/17 (roll out the app (stack deploy)): SSH connection to root@127.0.0.1:2222 "
                              f"failed during the deploy ({text}); check `inv status --env lab`; if a deploy lock "
                              f"remains, `inv unlock --env lab`")
    assert manager.commands()[-1] == FINISH and manager.closed


def test_ssh_error_while_reading_the_state_is_one_line(cfg, offline, reg):
    def lost(command):
        raise paramiko.SSHException("No existing session")

    with pytest.raises(ToolkitError) as err:
        deploy(cfg, FakeManager([("UpdateStatus.State", lost)]), builder=builder([]))
    assert str(err.value) == ("reading the state of lab on root@127.0.0.1:2222 failed (No existing session); nothing "
                              "was changed: check the manager (`inv status --env lab`) and rerun")


def test_docker_sdk_errors_in_build_and_push_steps_are_one_line(cfg, offline, reg, monkeypatch):
    import docker.errors
    import requests

    def broken_build(tag):
        raise docker.errors.APIError("500 Server Error", explanation="no space left on device")

    with pytest.raises(ToolkitError) as err:
        deploy(cfg, FakeManager(), builder=broken_build)
    assert str(err.value) == ("step 3/27 (the app image tagged v2) failed: Docker engine error (no space left on "
                              "device); check the engine (`docker info`) and the registry 127.0.0.1:5000, then rerun "
                              "`inv deploy --env lab`")

    def refused(*a, **k):
        raise requests.exceptions.ConnectionError("Connection aborted")

    monkeypatch.setattr(registry, "push", refused)
    with pytest.raises(ToolkitError) as err:
        deploy(cfg, FakeManager(), builder=builder([]))
    assert str(err.value) == ("step 4/27 (127.0.0.1:5000/djapp:v2 to the registry (Docker SDK, credentials in the auth "
                              "header)) failed: Connection aborted; check the network and the registry 127.0.0.1:5000, "
                              "then rerun")


def test_interrupt_still_writes_the_audit_line_and_releases_the_lock(cfg, offline, reg):
    def interrupt(command):
        raise KeyboardInterrupt

    manager = FakeManager([("stack.yml djt", interrupt)])
    with pytest.raises(KeyboardInterrupt):
        deploy(cfg, manager, builder=builder([]))
    assert manager.commands()[-1] == FINISH and finish_input(manager)[0].endswith("result=interrupted")


def test_dirty_tree_is_refused_unless_allowed_and_the_audit_says_dirty(tmp_path, offline, reg, monkeypatch):
    monkeypatch.setattr(executor, "git_tag", lambda: "abc1234-dirty")
    monkeypatch.setattr(wait, "probe", lambda url, host: (200, "abc1234-dirty"))
    cfg = make_cfg(tmp_path)
    with pytest.raises(ToolkitError) as err:
        deploy(cfg, FakeManager(), tag=None, builder=builder([]))
    assert str(err.value) == (f"the image 127.0.0.1:5000/djapp:abc1234-dirty is built from uncommitted changes (a -dirty "
                              f"tree); lab takes committed code only: commit first, or pass --allow-dirty (or set "
                              f"ALLOW_DIRTY=on in {tmp_path}/lab.env, as the lab does)")
    with pytest.raises(ToolkitError, match="built from uncommitted changes"):
        deploy(cfg, FakeManager(), tag="abc1234-dirty", build=False)
    from deploy.ship.config import load

    allowed = load("lab", env_dir=tmp_path, environ={}, flags={"ALLOW_DIRTY": "on"})
    manager = FakeManager()
    outcome = deploy(allowed, manager, tag=None, builder=builder([]))
    assert outcome.result == "ok" and " tree=dirty result=ok" in finish_input(manager)[0]


def test_unlock_names_the_holder(cfg, monkeypatch):
    manager = FakeManager([("lock/owner", Result(stdout="bob@ci pid=1\n"))])
    monkeypatch.setattr(ssh, "remote_runner", lambda cfg, out=None: remote(cfg, manager, out))
    out = io.StringIO()
    executor.unlock(cfg, out=out)
    assert out.getvalue().splitlines()[-1] == "released the deploy lock (held by: bob@ci pid=1)"
    assert manager.commands() == ["cat /var/lib/djdeploy/djt/lock/owner", "rm -rf /var/lib/djdeploy/djt/lock"]


def test_a_failing_command_names_its_step_and_what_to_check(cfg, offline, reg):
    manager = FakeManager([("stack.yml djt", Result(exited=1, stderr="failed to update service djt_app: out of sequence"))])
    with pytest.raises(ToolkitError) as err:
        deploy(cfg, manager, builder=builder([]))
    assert str(err.value) == ("step 23/27 (roll out the app (stack deploy)) failed (exit 1); check `inv status --env lab` "
                              "and `inv logs --env lab`; output:\nfailed to update service djt_app: out of sequence")
    assert manager.commands()[-1] == FINISH


def test_audit_last_without_timings_says_so(cfg, monkeypatch):
    reader = FakeManager([("steps.jsonl", Result(exited=1, stderr="tail: cannot open"))])
    monkeypatch.setattr(ssh, "remote_runner", lambda cfg, out=None: remote(cfg, reader, out))
    out = io.StringIO()
    info.last_steps(cfg, out=out)
    assert out.getvalue() == "no step timings yet at /var/lib/djdeploy/djt/steps.jsonl\n"


def test_stored_table_verbatim():
    from deploy.ship.report import stored_table

    data = {"when": "T", "action": "rollback", "env": "prod", "image": "r/djapp:v1", "digest": DIGEST, "tree": "clean",
            "result": "ok", "steps": [{"n": 1, "kind": "run", "where": "manager", "what": "take the lock",
                                       "seconds": 0.5, "result": "ok", "note": "taken"},
                                      {"n": 2, "kind": "poll", "where": "manager", "what": "until app converged",
                                       "seconds": 12.25, "result": "failed", "note": ""}]}
    assert stored_table(data) == (
        f"step timings: rollback of r/djapp:v1@{DIGEST} to prod at T (clean tree): ok (12.8s in the steps before the "
        "final audit step)\n"
        "step   seconds  result  what\n"
        "   1      0.50  ok      [manager] run take the lock (taken)\n"
        "   2     12.25  failed  [manager] poll until app converged\n")


def test_status_with_the_ssh_session_lost_is_one_line(cfg, monkeypatch):
    def lost(command):
        raise paramiko.SSHException("SSH session not active")

    reader = FakeManager([("stack services", lost)])
    monkeypatch.setattr(ssh, "remote_runner", lambda cfg, out=None: remote(cfg, reader, out))
    with pytest.raises(ToolkitError) as err:
        info.status(cfg, out=io.StringIO())
    assert str(err.value) == ("reading lab on root@127.0.0.1:2222 failed (SSH session not active); check the manager "
                              "and the network, then rerun")
    assert reader.closed
