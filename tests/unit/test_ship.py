"""deploy.ship.executor: step order, dry run == real run, lock, failing migration, rollback detection, no SSH
before the registry answers. The manager is a fake Fabric connection that records every command."""

import io
from pathlib import Path

import pytest
from invoke import Result

from deploy.ship import executor, registry, ssh, wait, swarm
from deploy.ship.config import load
from deploy.core.errors import ToolkitError
from deploy.core.runner import REDACTED, Runner

KEY = "K" * 30 + "abcdefghijklmnopqrstuvwxyz"


class FakeSftp:
    def __init__(self, files):
        self.files = files

    def open(self, path, mode):
        sftp = self

        class F(io.BytesIO):
            def chmod(self, m):
                pass

            def close(self):
                sftp.files[path] = self.getvalue()
                super().close()

            def __exit__(self, *a):
                self.close()
        return F()

    def chmod(self, path, mode):
        pass


class FakeManager:
    """A Fabric-Connection stand-in: answers by the first matching rule, records (command, stdin)."""

    def __init__(self, rules=()):
        self.rules = list(rules)
        self.calls, self.files, self.closed = [], {}, False
        self.status_reads = 0

    def run(self, command, **kw):
        stream = kw.get("in_stream")
        stdin = stream.read() if stream else None
        self.calls.append((command, stdin))
        for needle, answer in self.rules:
            if needle in command:
                return answer(command) if callable(answer) else answer
        if "UpdateStatus.State" in command:
            self.status_reads += 1
            return Result(stdout="completed T0\n" if self.status_reads == 1 else "completed T1\n")
        if "desired-state=running" in command:
            return Result(stdout="Running 1 second ago|i|\n" * 9)
        return Result(stdout="")

    def sftp(self):
        return FakeSftp(self.files)

    def close(self):
        self.closed = True

    def commands(self):
        return [c for c, _ in self.calls]


@pytest.fixture
def cfg(tmp_path):
    (tmp_path / "id").write_text("k")
    (tmp_path / "kh").write_text("x")
    (tmp_path / "lab.env").write_text(
        f"MANAGER_HOST=127.0.0.1\nSSH_PORT=2222\nSSH_KEY={tmp_path}/id\nKNOWN_HOSTS={tmp_path}/kh\n"
        "REGISTRY=127.0.0.1:5000\nREGISTRY_USER=lab\nREGISTRY_PASSWORD=regsecret\nSTACK_NAME=djt\n"
        f"DJANGO_SECRET_KEY={KEY}\nPOSTGRES_PASSWORD=pgsecret\nDJANGO_ALLOWED_HOSTS=127.0.0.1\nPUBLISHED_PORT=18080\n"
        "PUBLISH_MODE=host\nENDPOINT_MODE=dnsrr\nTLS_MODE=external\nTRUSTED_LB=192.0.2.1\n")
    return load("lab", env_dir=tmp_path, environ={})


@pytest.fixture
def offline(monkeypatch):
    """No registry, no HTTP, no sleeping: the local side answers as a healthy lab would."""
    monkeypatch.setattr(registry, "check", lambda cfg: None)
    monkeypatch.setattr(registry, "require_tag", lambda cfg, tag: "sha256:feed")
    monkeypatch.setattr(wait, "probe", lambda url, host, **kw: (200, "v2"))
    monkeypatch.setattr(wait, "POLL", 0)
    monkeypatch.setattr(executor, "git_tag", lambda: "abc1234")


def remote(cfg, manager, out):
    return Runner(ctx=manager, where="root@127.0.0.1", secrets=tuple(cfg.secrets), out=out)


FINISH = "sh -c 'cat >> \"$1\"; status=$?; rm -rf \"$2\" && exit \"$status\"' finish /var/lib/djdeploy/djt/audit.log /var/lib/djdeploy/djt/lock"
TRUSTED = ("sh -c 'set -e; umask 077; s=\"$(docker network inspect --format \"{{range .IPAM.Config}}{{.Subnet}},{{end}}\" \"$1\")\"; "
           "[ -n \"$s\" ]; printf \"DJANGO_TRUSTED_PROXY=%s\\n\" \"${s%,}\" > \"$2\"' trusted-proxy djt_backend "
           "/var/lib/djdeploy/djt/trusted-proxy.env")
DRY_PLAN = [
    ("local", "check registry http://127.0.0.1:5000/v2/ (user lab)"),
    ("local", "check that 127.0.0.1:5000/djapp:v2 is in the registry"),
    ("root@127.0.0.1", "sh -c 'owner=\"$(cat)\" && mkdir -p -m 0700 \"$1\" && mkdir \"$2\" && printf \"%s\\n\" \"$owner\" > \"$2/owner\"' lock /var/lib/djdeploy/djt /var/lib/djdeploy/djt/lock"),
    ("root@127.0.0.1", "put /var/lib/djdeploy/djt/stack.yml (mode 0600, SIZE bytes)"),
    ("root@127.0.0.1", "put /var/lib/djdeploy/djt/haproxy.cfg (mode 0600, SIZE bytes)"),
    ("root@127.0.0.1", "docker --config /var/lib/djdeploy/djt/docker login --username lab --password-stdin 127.0.0.1:5000"),
    ("root@127.0.0.1", "docker secret create --label com.docker.stack.namespace=djt --label djdeploy.secret=django_secret_key NAME -"),
    ("root@127.0.0.1", "docker secret create --label com.docker.stack.namespace=djt --label djdeploy.secret=database_url NAME -"),
    ("root@127.0.0.1", "docker secret create --label com.docker.stack.namespace=djt --label djdeploy.secret=postgres_password NAME -"),
    ("root@127.0.0.1", "docker service inspect --format '{{if .UpdateStatus}}{{.UpdateStatus.State}} {{.UpdateStatus.StartedAt}}{{end}}' djt_app"),
    ("root@127.0.0.1", "put /var/lib/djdeploy/djt/stack-base.yml (mode 0600, SIZE bytes)"),
    ("root@127.0.0.1", "docker --config /var/lib/djdeploy/djt/docker stack deploy --with-registry-auth --compose-file /var/lib/djdeploy/djt/stack-base.yml djt"),
    ("root@127.0.0.1", "wait until djt_db runs 1 healthy task(s) (poll `docker service ps --filter desired-state=running --format '{{.CurrentState}}|{{.Image}}|{{.Error}}' djt_db`, up to 300s)"),
    ("root@127.0.0.1", TRUSTED),
    ("root@127.0.0.1", "put /var/lib/djdeploy/djt/migrate.env (mode 0600, SIZE bytes)"),
    ("root@127.0.0.1", "docker --config /var/lib/djdeploy/djt/docker run --rm --network djt_backend --env-file /var/lib/djdeploy/djt/migrate.env --label djdeploy.stack=djt --label djdeploy.role=migrate 127.0.0.1:5000/djapp:v2 python manage.py migrate --noinput"),
    ("root@127.0.0.1", "rm -f /var/lib/djdeploy/djt/migrate.env"),
    ("root@127.0.0.1", "docker --config /var/lib/djdeploy/djt/docker stack deploy --with-registry-auth --compose-file /var/lib/djdeploy/djt/stack.yml djt"),
    ("root@127.0.0.1", "wait until djt_app has converged (poll `docker service inspect --format '{{if .UpdateStatus}}{{.UpdateStatus.State}} {{.UpdateStatus.StartedAt}}{{end}}' djt_app`: completed, or rollback_completed = failure; a new service: all replicas running; up to 300s)"),
    ("root@127.0.0.1", "wait until djt_proxy runs 1 healthy task(s) (poll `docker service ps --filter desired-state=running --format '{{.CurrentState}}|{{.Image}}|{{.Error}}' djt_proxy`, up to 300s)"),
    ("root@127.0.0.1", "check http://127.0.0.1:18080/health/?ready=1 (Host: 127.0.0.1) until 3 answers in a row are 200 with X-App-Version: v2 (up to 60s)"),
    ("root@127.0.0.1", FINISH),
]


def normalized(history):
    import re

    return [(w, re.sub(r"djt_[a-z_]+_[0-9a-f]{10}", "NAME", re.sub(r"\d+ bytes", "SIZE bytes", t))) for w, t in history]


def test_dry_run_plan_is_every_step_in_order_and_runs_nothing(cfg, monkeypatch):
    monkeypatch.setattr(registry, "check", lambda cfg: pytest.fail("dry run touched the registry"))
    monkeypatch.setattr(ssh, "open_connection", lambda cfg: pytest.fail("dry run opened SSH"))
    out = io.StringIO()
    outcome = executor.deploy(cfg, tag="v2", build=False, dry_run=True, out=out)
    assert normalized(outcome.history) == DRY_PLAN
    printed = out.getvalue()
    assert printed.count("(dry run)") == len(DRY_PLAN)
    for secret in ("regsecret", "pgsecret", KEY):
        assert secret not in printed


def test_dry_run_with_build_lists_build_and_push(cfg):
    outcome = executor.deploy(cfg, tag="v2", build=True, dry_run=True, out=io.StringIO())
    assert outcome.history[1:3] == [
        ("local", "build app image with tag v2 (deploy.image.builder.build)"),
        ("local", "push 127.0.0.1:5000/djapp:v2 (Docker SDK, credentials in the auth header)")]


def test_real_run_executes_exactly_the_dry_run_plan(cfg, offline):
    manager = FakeManager()
    out = io.StringIO()
    outcome = executor.deploy(cfg, tag="v2", build=False, out=out, remote=remote(cfg, manager, out))
    dry = executor.deploy(cfg, tag="v2", build=False, dry_run=True, out=io.StringIO())
    assert outcome.result == "ok" and manager.closed
    assert normalized(outcome.history) == normalized(dry.history) == DRY_PLAN
    # secrets went on stdin or into 0600 files, never into argv or the output
    stdins = {c.split()[-2] if "secret create" in c else c.split()[0]: s for c, s in manager.calls if s}
    assert stdins["docker"] == "regsecret\n"
    assert KEY in manager.files["/var/lib/djdeploy/djt/migrate.env"].decode()
    text = out.getvalue() + " ".join(manager.commands())
    for secret in ("regsecret", "pgsecret", KEY):
        assert secret not in text
    audit = [s for c, s in manager.calls if "audit.log" in c][0]
    assert "action=deploy env=lab git=abc1234 image=127.0.0.1:5000/djapp:v2 digest=sha256:feed result=ok" in audit
    owner = [s for c, s in manager.calls if "lock/owner" not in c and "mkdir" in c][0]
    assert "action=deploy image=127.0.0.1:5000/djapp:v2" in owner


def test_stack_file_uploaded_names_the_image_and_versioned_secrets(cfg, offline):
    manager = FakeManager()
    executor.deploy(cfg, tag="v2", build=False, out=io.StringIO(), remote=remote(cfg, manager, io.StringIO()))
    import json

    spec = json.loads(manager.files["/var/lib/djdeploy/djt/stack.yml"])
    assert spec["services"]["app"]["image"] == "127.0.0.1:5000/djapp:v2"
    assert spec["secrets"]["database_url"]["name"] == swarm.secret_names(cfg)["database_url"]
    base = json.loads(manager.files["/var/lib/djdeploy/djt/stack-base.yml"])
    assert set(base["services"]) == {"db", "proxy"}


def test_concurrent_deploy_is_refused_naming_the_holder(cfg, offline):
    manager = FakeManager([("owner=\"$(cat)\"", Result(exited=1, stderr="mkdir: cannot create directory: File exists")),
                           ("lock/owner", Result(stdout="alice@laptop pid=42 since=T action=deploy image=x\n"))])
    with pytest.raises(ToolkitError) as err:
        executor.deploy(cfg, tag="v2", build=False, out=io.StringIO(), remote=remote(cfg, manager, io.StringIO()))
    assert str(err.value) == ("deploy lock /var/lib/djdeploy/djt/lock on 127.0.0.1 is held by: alice@laptop pid=42 "
                              "since=T action=deploy image=x; wait for that deploy to finish, or if it is stale "
                              "release it with `inv unlock --env lab`")
    cmds = manager.commands()
    assert not any("rm -rf" in c for c in cmds), "someone else's lock must not be released"
    assert not any("audit.log" in c for c in cmds)
    assert not any("stack deploy" in c or "secret create" in c for c in cmds)


def test_failing_migration_rolls_out_nothing_and_releases_the_lock(cfg, offline):
    manager = FakeManager([("manage.py migrate", Result(exited=1, stderr="django.db.utils.ProgrammingError: boom"))])
    with pytest.raises(ToolkitError) as err:
        executor.deploy(cfg, tag="v2", build=False, out=io.StringIO(), remote=remote(cfg, manager, io.StringIO()))
    assert str(err.value) == ("migration failed (exit 1); nothing was rolled out: lab keeps serving the previous "
                              "version. Output:\ndjango.db.utils.ProgrammingError: boom")
    cmds = manager.commands()
    assert not any("stack.yml djt" in c for c in cmds)
    assert cmds[-2:] == ["rm -f /var/lib/djdeploy/djt/migrate.env", FINISH]
    assert "result=failed" in [s for c, s in manager.calls if "audit.log" in c][0]


def test_rolled_back_release_fails_the_deploy(cfg, offline):
    states = iter(["completed T0", "updating T1", "updating T1", "rollback_started T1", "rollback_completed T1"])

    def status(command):
        return Result(stdout=next(states, "rollback_completed T1") + "\n")

    manager = FakeManager([("UpdateStatus.Message", Result(stdout="update paused due to failure of task x\n")),
                           ("UpdateStatus.State", status)])
    out = io.StringIO()
    with pytest.raises(ToolkitError) as err:
        executor.deploy(cfg, tag="v3", build=False, out=out, remote=remote(cfg, manager, out))
    assert str(err.value) == ("release 127.0.0.1:5000/djapp:v3 failed on djt_app (update paused due to failure of "
                              "task x); Swarm rolled it back automatically and the previous version keeps serving")
    assert manager.commands()[-1] == FINISH
    assert "djt_app: rollback_completed" in out.getvalue()


def test_convergence_wait_times_out_with_a_message(cfg, offline, monkeypatch):
    manager = FakeManager([("UpdateStatus.State", Result(stdout="updating T1\n"))])
    manager.rules.insert(0, ("UpdateStatus.State", (lambda c, n=iter(range(10**6)): Result(
        stdout="completed T0\n" if next(n) == 0 else "updating T1\n"))))
    cfg = type(cfg)(**{**cfg.__dict__, "converge_timeout": 0.2})
    with pytest.raises(ToolkitError, match=r"^timed out after 0.2s waiting for djt_app to finish its update "
                                           r"\(last state: updating\); check `inv status --env lab`$"):
        executor.deploy(cfg, tag="v2", build=False, out=io.StringIO(), remote=remote(cfg, manager, io.StringIO()))
    assert manager.commands()[-1] == FINISH


def test_registry_down_fails_before_any_ssh(cfg, monkeypatch):
    monkeypatch.setattr(ssh, "open_connection", lambda cfg: pytest.fail("SSH opened with the registry down"))
    cfg = type(cfg)(**{**cfg.__dict__, "registry": "127.0.0.1:1"})
    with pytest.raises(ToolkitError, match=r"^registry 127.0.0.1:1 is not reachable \(.*\); start it \(`inv lab.up` "
                                           r"for the lab\) or fix REGISTRY in .*lab.env. Nothing was changed on the manager$"):
        executor.deploy(cfg, tag="v2", build=False, out=io.StringIO())


def test_unknown_rollback_tag_is_refused_before_ssh(cfg, monkeypatch):
    monkeypatch.setattr(registry, "check", lambda cfg: None)
    monkeypatch.setattr(registry, "manifest_digest", lambda cfg, tag: None)
    monkeypatch.setattr(ssh, "open_connection", lambda cfg: pytest.fail("SSH opened for an unknown tag"))
    with pytest.raises(ToolkitError) as err:
        executor.rollback(cfg, to="nope", out=io.StringIO())
    assert str(err.value) == ("unknown image tag 'nope': 127.0.0.1:5000/djapp:nope is not in the registry; push it "
                              "first (`inv push --env lab`) or pick a tag that was deployed (`inv audit --env lab`)")


def test_rollback_skips_build_push_and_migration(cfg, offline):
    manager = FakeManager()
    ship_wait_probe = wait.probe
    outcome = executor.deploy(cfg, tag="v2", build=False, migrate=False, action="rollback", out=io.StringIO(),
                          remote=remote(cfg, manager, io.StringIO()))
    cmds = manager.commands()
    assert not any("migrate" in c or "stack-base" in c for c in cmds)
    assert sum("stack deploy" in c for c in cmds) == 1
    assert "action=rollback" in [s for c, s in manager.calls if "audit.log" in c][0]
    import json

    spec = json.loads(manager.files["/var/lib/djdeploy/djt/stack.yml"])
    assert spec["services"]["app"]["deploy"]["update_config"]["parallelism"] == 0
    assert ship_wait_probe is wait.probe and outcome.result == "ok"


def test_ssh_connection_rejects_unknown_host_keys(cfg, tmp_path):
    import paramiko

    conn = ssh.connection(cfg)
    assert isinstance(conn.client._policy, paramiko.RejectPolicy)
    assert conn.connect_timeout == cfg.connect_timeout
    kw = conn.connect_kwargs
    assert (kw["banner_timeout"], kw["auth_timeout"], kw["look_for_keys"], kw["allow_agent"]) == (10.0, 10.0, False, False)
    assert kw["key_filename"] == [cfg.ssh_key]
    assert len(conn.client.get_host_keys()) == 0 and len(conn.client._system_host_keys) == 0


def test_ssh_lost_mid_deploy_is_one_line_and_still_tries_to_release(cfg, offline):
    def lost(command):
        raise OSError("Socket is closed")

    manager = FakeManager([("stack.yml djt", lost)])
    with pytest.raises(ToolkitError) as err:
        executor.deploy(cfg, tag="v2", build=False, migrate=False, out=io.StringIO(), remote=remote(cfg, manager, io.StringIO()))
    assert str(err.value) == ("SSH connection to root@127.0.0.1:2222 failed during the deploy (Socket is closed); check "
                              "`inv status --env lab`; if a deploy lock remains, `inv unlock --env lab`")
    assert manager.commands()[-1] == FINISH and manager.closed
