"""deploy.ops in `inv deploy`: the migration-safety check and the pre-migrate backup, as steps of the engine's
plan. Refused or failed -> nothing migrated, nothing rolled out, lock released; the audit line names the backup."""

import io
import json

import pytest
from invoke import Result

from deploy.core.errors import ToolkitError
from deploy.ops import migration_check
from deploy.ship import executor
from shipfakes import DIGEST, FakeManager, FakeRegistry, builder, make_cfg, offline, remote  # noqa: F401

PENDING = 'DJDEPLOY-MIGRATIONS {"pending": ["notes.0002_drop_text"], "unsafe": %s}\n'
UNSAFE = json.dumps([["notes.0002_drop_text", "drops column note.text"]])
NAME_RE = r"[0-9]{8}T[0-9]{6}Z-v1\.dump"


@pytest.fixture
def cfg(tmp_path):
    return make_cfg(tmp_path)


@pytest.fixture
def reg(monkeypatch):
    return FakeRegistry(monkeypatch)


def rules(unsafe="[]", dump=None):
    return [("role=migration-check", Result(stdout=PENDING % unsafe)),
            ("ContainerSpec.Image", Result(stdout="127.0.0.1:5000/djapp:v1@sha256:abc\n")),
            ("djdeploy.role=backup", dump if dump is not None else (lambda cmd: Result(stdout=f"backup {cmd.split()[-4]} 4096 {'d' * 64}\n")))]


def deploy(cfg, manager, **kw):
    out = io.StringIO()
    kw.setdefault("tag", "v2")
    try:
        return executor.deploy(cfg, out=out, remote=remote(cfg, manager, out), builder=builder([]), **kw), out
    finally:
        print(out.getvalue())


def audit(manager):
    return manager.stdin_of("finish /var/lib")[0].splitlines()[0]


def test_an_unsafe_migration_is_refused_before_backup_and_migration(cfg, offline, reg):
    manager = FakeManager(rules(UNSAFE), app=True)
    with pytest.raises(ToolkitError) as err:
        deploy(cfg, manager)
    assert str(err.value) == (
        "refusing to migrate lab: migration notes.0002_drop_text drops column note.text; the running release still "
        "uses it during the rolling update. Nothing was migrated or rolled out. Split it over two deploys (first stop "
        "using it, then change the schema), or pass --allow-unsafe-migrations (a backup is taken first)")
    cmds = manager.commands()
    assert not any("manage.py migrate" in c or "role=backup" in c or "stack.yml djt" in c for c in cmds)
    assert "result=failed" in audit(manager)


def test_allowed_unsafe_migration_is_backed_up_first_and_the_audit_names_the_backup(cfg, offline, reg):
    import re

    manager = FakeManager(rules(UNSAFE), app=True)
    outcome, out = deploy(cfg, manager, allow_unsafe_migrations=True)
    assert outcome.result == "ok"
    cmds = manager.commands()
    backup_at = next(i for i, c in enumerate(cmds) if "role=backup" in c)
    assert backup_at < next(i for i, c in enumerate(cmds) if "manage.py migrate" in c)
    assert manager.stdin_of("role=backup") == ["pgsecret\n"]
    line = audit(manager)
    assert re.search(rf" backup={NAME_RE} result=ok$", line), line
    assert "1 unsafe operation(s) allowed by --allow-unsafe-migrations" in out.getvalue()
    assert "pgsecret" not in out.getvalue()


def test_a_first_deploy_has_no_running_release_to_break(cfg, offline, reg):
    manager = FakeManager(rules(UNSAFE))  # no app service yet: Django's own historic drops are fine
    outcome, out = deploy(cfg, manager)
    assert outcome.result == "ok" and any("role=backup" in c for c in manager.commands())


def test_no_pending_migrations_means_no_backup(cfg, offline, reg):
    manager = FakeManager()  # shipfakes answers the check with an empty plan
    outcome, out = deploy(cfg, manager)
    assert outcome.result == "ok"
    assert not any("role=backup" in c for c in manager.commands())
    assert " backup=" not in audit(manager)
    assert "skipped: no pending migrations" in out.getvalue()


def test_a_failed_backup_stops_the_deploy_before_migrating(cfg, offline, reg):
    full = Result(exited=1, stderr="pg_dump: error: could not write to output file: No space left on device\n")
    manager = FakeManager(rules(dump=full))
    with pytest.raises(ToolkitError) as err:
        deploy(cfg, manager)
    assert str(err.value) == (
        "backup of environment lab failed: the disk holding /var/lib/djdeploy/djt/backups is full; no backup was written "
        "(partial files removed); free space or fix the cause, then `inv db.backup --env lab`. The deploy stopped "
        "before migrating: lab keeps serving the previous version")
    assert not any("manage.py migrate" in c or "stack.yml djt" in c for c in manager.commands())


def test_parse_and_check_command(cfg):
    assert migration_check.parse("noise\n" + PENDING % UNSAFE) == (["notes.0002_drop_text"],
                                                                    [("notes.0002_drop_text", "drops column note.text")])
    with pytest.raises(ToolkitError) as err:
        migration_check.parse("Traceback ...")
    assert str(err.value) == ("the migration check printed no result; run `inv manage --env ENV -- migrate --plan` "
                              "to see why")
    assert migration_check.check_cmd(cfg, "img") == [
        "docker", "--config", "/var/lib/djdeploy/djt/docker", "run", "--rm", "-i", "--network", "djt_backend",
        "--env-file", "/var/lib/djdeploy/djt/migrate.env", "--label", "djdeploy.stack=djt",
        "--label", "djdeploy.role=migration-check", "img", "python", "-"]
    two = [("a.1", "drops column x.y"), ("a.2", "renames model A to B (its table)")]
    assert migration_check.refusal(two, "prod").startswith(
        "refusing to migrate prod: migration a.1 drops column x.y (and 1 more unsafe operation(s)); ")


def test_rollback_to_an_older_release_names_the_migrations_and_asks(cfg):
    from deploy.core.runner import Runner
    from deploy.ops import rollback_check

    answer = Result(stdout="noise\nDJDEPLOY-UNKNOWN notes.0002_add_extra,notes.0003_drop_extra\n")
    manager = FakeManager([("role=rollback-check", answer)])
    run = Runner(ctx=manager, where="m", secrets=cfg.secrets, out=io.StringIO())
    with pytest.raises(ToolkitError) as err:
        rollback_check.confirm(cfg, run, "v1", yes=False, tty=False)
    assert str(err.value) == ("release v1 is older than the database's schema: it does not know the applied "
                              "migration(s) notes.0002_add_extra, notes.0003_drop_extra (a rollback does not undo "
                              "migrations); nothing was changed. If that release works on this schema, pass --yes")
    cmds = manager.commands()
    assert "--env-file /var/lib/djdeploy/djt/rollback-check.env" in cmds[0] and "127.0.0.1:5000/djapp:v1" in cmds[0]
    assert cmds[-1] == "rm -f /var/lib/djdeploy/djt/rollback-check.env"
    assert "pgsecret" in manager.files["/var/lib/djdeploy/djt/rollback-check.env"].decode()  # only in the 0600 file
    asked = []
    with pytest.raises(ToolkitError) as err:
        rollback_check.confirm(cfg, run, "v1", yes=False, tty=True, ask=lambda q: asked.append(q) or "no")
    assert str(err.value) == "rollback not confirmed; nothing was changed" and "Roll back anyway?" in asked[0]
    rollback_check.confirm(cfg, run, "v1", yes=False, tty=True, ask=lambda q: "yes")
    rollback_check.confirm(cfg, run, "v1", yes=True, tty=False)


def test_rollback_check_without_unknown_migrations_is_silent(cfg):
    from deploy.core.runner import Runner
    from deploy.ops import rollback_check

    run = Runner(ctx=FakeManager(), where="m", out=io.StringIO())  # shipfakes: the target knows them all
    rollback_check.confirm(cfg, run, "v1", yes=False, tty=False)
    with pytest.raises(ToolkitError) as err:
        rollback_check.parse("Traceback")
    assert str(err.value) == ("the rollback check printed no result; check `inv logs --env ENV` and the target image")
