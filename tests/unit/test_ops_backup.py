"""deploy.ops.backup builders and deploy.ops.backups steps: exact commands, the password only on stdin,
every error message verbatim, nothing changed before the checks pass. No engine: a fake Runner context."""

from __future__ import annotations

import io
import contextlib

import pytest
from invoke import Result

from deploy.core.errors import ToolkitError
from deploy.core.runner import Runner
from deploy.ops import backup, backups
from deploy.ops.target import Target, from_env, from_local, local_backup_dir

T = Target(env="", label="djx", network="djx_default", backup_dir="/b", postgres_image="postgres:17-trixie",
           db_user="djapp", db_name="djapp", password="pw-secret", user="1000:1000")
NAME = "20261201T091700Z-abc1234.dump"
SQL = backup.MIGRATIONS_SQL
META = (f"name={NAME}\ncreated=2026-12-01T09:17:00Z\nrelease=abc1234\nreason=manual\nsize=10\nsha256={'a' * 64}\n"
        "migrations=notes.0001_initial,auth.0001_initial\n")


class Ctx:
    """Answers by the first rule whose needle is in the command; records (command, stdin)."""

    def __init__(self, rules=()):
        self.rules, self.calls = list(rules), []

    def run(self, command, **kw):
        stream = kw.get("in_stream")
        self.calls.append((command, stream.read() if stream else None))
        for needle, answer in self.rules:
            if needle in command:
                return answer
        return Result(stdout="")


class Site:
    host = "this machine"
    timeout = 60

    def __init__(self, rules=(), target=T):
        self.target = target
        self.ctx = Ctx(rules)
        self.run = Runner(ctx=self.ctx, secrets=(target.password,), out=io.StringIO())
        self.events = []

    def release(self):
        return "abc1234"

    @contextlib.contextmanager
    def maintenance(self):
        self.events.append("on")
        try:
            yield
        finally:
            self.events.append("off")


def test_dump_command_is_a_one_off_postgres_container_on_the_stack_network():
    argv = backup.dump_cmd(T, NAME, "2026-12-01T09:17:00Z", "abc1234", "manual")
    assert argv[:20] == ["docker", "run", "--rm", "-i", "--network", "djx_default", "--label", "djdeploy.stack=djx",
                         "--label", "djdeploy.role=backup", "--user", "1000:1000", "--volume", "/b:/backups",
                         "--env", "PGHOST=db", "--env", "PGPORT=5432", "--env", "PGUSER=djapp"]
    assert argv[20:26] == ["--env", "PGDATABASE=djapp", "--env", f"MIGRATIONS_SQL={SQL}", "--entrypoint", "sh"]
    assert argv[26:29] == ["postgres:17-trixie", "-c", backup.DUMP_SCRIPT]
    assert argv[29:] == ["backup", NAME, "2026-12-01T09:17:00Z", "abc1234", "manual"]
    assert "pw-secret" not in " ".join(argv)


def test_dump_script_writes_temporary_names_and_renames_the_sidecar_last():
    s = backup.DUMP_SCRIPT
    assert "pg_dump --format=custom" in s and 'pg_restore --list "$tmp"' in s
    assert s.index('mv "$tmp" "$d/$n"') < s.index('mv "$mtmp" "$d/$n.meta"')
    assert 'trap \'rm -f "$tmp" "$mtmp"\' EXIT' in s and s.index("sync") < s.index("mv ")
    assert s.startswith("set -eu; IFS= read -r PGPASSWORD; export PGPASSWORD;")


def test_env_target_uses_the_overlay_network_and_the_manager_dir(tmp_path):
    from deploy.ship.config import load

    (tmp_path / "id").write_text("k")
    (tmp_path / "kh").write_text("x")
    (tmp_path / "lab.env").write_text(
        f"MANAGER_HOST=127.0.0.1\nSSH_KEY={tmp_path}/id\nKNOWN_HOSTS={tmp_path}/kh\nREGISTRY=r:5000\n"
        f"REGISTRY_USER=lab\nREGISTRY_PASSWORD=regsecret\nSTACK_NAME=djt\nDJANGO_SECRET_KEY={'K' * 30 + 'abcdefghijklmnopqrstuvwxyz'}\n"
        "POSTGRES_PASSWORD=pgsecret\nDJANGO_ALLOWED_HOSTS=x\n")
    t = from_env(load("lab", env_dir=tmp_path, environ={}))
    assert (t.network, t.backup_dir, t.db_user, t.db_name, t.password, t.user, t.flag) == (
        "djt_backend", "/var/lib/djdeploy/djt/backups", "app", "app", "pgsecret", "", " --env lab")
    assert "pgsecret" not in repr(t)


def test_local_target_defaults(tmp_path):
    class S:
        project, postgres_image = "djapp", "postgres:17-trixie"

    t = from_local(S(), {"POSTGRES_PASSWORD": "p"}, environ={"DJDEPLOY_BACKUP_DIR": str(tmp_path)}, uid=5, gid=6)
    assert (t.network, t.backup_dir, t.db_user, t.user, t.what) == (
        "djapp_default", str(tmp_path), "djapp", "5:6", "the local stack (project djapp)")
    assert str(local_backup_dir({})).endswith("/backups")


def test_other_commands():
    assert backup.restore_cmd(T, NAME)[-4:] == ["-c", backup.RESTORE_SCRIPT, "restore", NAME]
    assert "--clean --if-exists" in backup.RESTORE_SCRIPT and "--single-transaction" in backup.RESTORE_SCRIPT
    assert "--volume" not in backup.schema_cmd(T)
    assert backup.list_cmd(T) == ["sh", "-c", backup.LIST_SCRIPT, "list", "/b"]
    assert backup.verify_cmd(T, NAME) == ["sh", "-c", backup.VERIFY_SCRIPT, "verify", "/b", NAME]
    assert backup.mkdir_cmd(T) == ["mkdir", "-p", "-m", "0700", "/b"]
    assert backup.remove_cmd(T, [NAME]) == ["rm", "-f", f"/b/{NAME}.meta", f"/b/{NAME}"]


def test_names():
    assert backup.backup_name("abc1234-dirty", when=0) == "19700101T000000Z-abc1234-dirty.dump"
    assert backup.backup_name("reg:5000/x y", when=0) == "19700101T000000Z-reg_5000_x_y.dump"
    assert backup.backup_name("", when=0) == "19700101T000000Z-none.dump"
    assert backup.check_name(NAME) == NAME
    for bad in ("../etc/passwd", "x.dump", NAME + ".meta", ""):
        with pytest.raises(ToolkitError) as err:
            backup.check_name(bad)
        assert str(err.value) == (f"{bad!r} is not a backup name (like 20261201T091700Z-abc1234.dump); "
                                  "list them with `inv db.backups`")


def test_parse_list_and_table():
    other = META.replace(NAME, "20261130T000000Z-old.dump").replace("size=10", "size=2048")
    metas = backup.parse_list(META + "\n" + other + "\n")
    assert [m.name for m in metas] == ["20261130T000000Z-old.dump", NAME]
    assert metas[1].migrations == ("notes.0001_initial", "auth.0001_initial") and metas[1].size == 10
    now = 1796116620.0 + 3600 * 2  # 2026-12-01T09:17:00Z + 2h
    text = backup.table(metas[1:], now=now)
    assert text.splitlines() == ["BACKUP" + " " * (len(NAME) - 4) + "SIZE  AGE  SHA256        RELEASE  REASON",
                                 f"{NAME}  10 B  2h   aaaaaaaaaaaa  abc1234  manual"]
    assert backup.table([]) == ""
    assert backup.human_size(1536) == "1.5 KB" and backup.human_size(3 * 1024 ** 3) == "3.0 GB"
    assert backup.human_age("garbage") == "?"


def test_take_sends_the_password_on_stdin_and_reports():
    site = Site([("docker run", Result(stdout=f"backup {NAME} 2048 {'b' * 64}\n"))])
    out = io.StringIO()
    meta = backups.take(site, out=out)
    dump = [c for c in site.ctx.calls if c[0].startswith("docker run")][0]
    assert dump[1] == "pw-secret\n" and "pw-secret" not in dump[0]
    assert meta.size == 2048 and meta.release == "abc1234" and meta.reason == "manual"
    assert out.getvalue().endswith(f"(2.0 KB, sha256 bbbbbbbbbbbb) in /b on this machine\n")
    assert site.ctx.calls[0][0] == "mkdir -p -m 0700 /b"


@pytest.mark.parametrize("tail,why", [
    ("pg_dump: error: could not write to output file: No space left on device", "the disk holding /b is full"),
    ('pg_dump: error: connection to server at "db" failed', 'pg_dump: error: connection to server at "db" failed'),
    ("", "exit 1"),
])
def test_take_failure_is_one_line(tail, why):
    site = Site([("docker run", Result(stdout="", stderr=tail, exited=1))])
    with pytest.raises(ToolkitError) as err:
        backups.take(site)
    assert str(err.value) == (f"backup of the local stack (project djx) failed: {why}; no backup was written "
                              f"(partial files removed); free space or fix the cause, then `inv db.backup`")


def _verify_answer(size="10", digest="a" * 64):
    return Result(stdout=META + f"actual_size={size}\nactual_sha256={digest}\n")


def test_restore_checks_then_confirms_then_restores_in_maintenance():
    site = Site([("verify", _verify_answer()),
                 ("role=schema", Result(stdout="auth.0001_initial,notes.0001_initial\n"))])
    asked = []
    backups.restore(site, NAME, asked.append, out=io.StringIO())
    assert asked == [f"replace the database of the local stack (project djx) with backup {NAME} (release abc1234)"]
    assert site.events == ["on", "off"]
    restore = [c for c in site.ctx.calls if "role=restore" in c[0]][0]
    assert restore[1] == "pw-secret\n"


@pytest.mark.parametrize("answer,message", [
    (Result(stdout="", stderr="missing: x", exited=4),
     f"no backup {NAME} in /b on this machine; list them with `inv db.backups`"),
    (_verify_answer(size="7"),
     f"backup {NAME} in /b on this machine is truncated or corrupt (7 bytes, its sidecar says 10); nothing was "
     "changed; pick another backup from `inv db.backups`"),
    (_verify_answer(digest="c" * 64),
     f"backup {NAME} in /b on this machine is corrupt (sha256 cccccccccccc..., its sidecar says aaaaaaaaaaaa...); "
     "nothing was changed; pick another backup from `inv db.backups`"),
])
def test_restore_refuses_missing_or_corrupt_backups_before_anything(answer, message):
    site = Site([("verify", answer)])
    with pytest.raises(ToolkitError) as err:
        backups.restore(site, NAME, lambda what: pytest.fail("asked"))
    assert str(err.value) == message
    assert site.events == [] and not any("role=restore" in c for c, _ in site.ctx.calls)


def test_restore_refuses_an_older_schema():
    site = Site([("verify", _verify_answer()),
                 ("role=schema", Result(stdout="auth.0001_initial,notes.0001_initial,notes.0002_b,notes.0003_c,"
                                               "notes.0004_d,x.0001_e\n"))])
    with pytest.raises(ToolkitError) as err:
        backups.restore(site, NAME, lambda what: pytest.fail("asked"))
    assert str(err.value) == (f"refusing to restore {NAME}: the database of the local stack (project djx) has a "
                              "newer schema (migrations notes.0002_b, notes.0003_c, notes.0004_d and 1 more are not "
                              "in the backup, taken at release abc1234); nothing was changed; restore a newer "
                              "backup, or migrate the database back first")
    assert site.events == []


def test_restore_into_an_unmigrated_database_is_allowed():
    site = Site([("verify", _verify_answer()), ("role=schema", Result(stdout="", stderr="no table", exited=1))])
    backups.restore(site, NAME, lambda what: None, out=io.StringIO())
    assert site.events == ["on", "off"]


def test_failed_restore_is_one_line_and_maintenance_ends():
    site = Site([("verify", _verify_answer()), ("role=schema", Result(stdout="")),
                 ("role=restore", Result(stderr="pg_restore: error: could not execute query\n", exited=1))])
    with pytest.raises(ToolkitError) as err:
        backups.restore(site, NAME, lambda what: None)
    assert str(err.value) == (f"restore of {NAME} into the local stack (project djx) failed (pg_restore: error: "
                              "could not execute query); it ran in one transaction, so the database is unchanged")
    assert site.events == ["on", "off"]


def test_listing():
    site = Site([("list", Result(stdout=META + "\n"))])
    assert [m.name for m in backups.listing(site)] == [NAME]


def test_an_external_database_is_dumped_from_its_own_host_with_the_password_on_stdin_only():
    from types import SimpleNamespace

    from deploy.ops import target

    cfg = SimpleNamespace(env="prod", stack_name="shop", remote_dir="/var/lib/djdeploy/shop", postgres_image="postgres:17-trixie",
                          postgres_password="", database="external", network="", replicas=2,
                          database_url="postgres://shop%40eu:p%2Fw@pg.example.com:6432/shopdb")
    t = target.from_env(cfg)
    assert (t.db_host, t.db_port, t.db_user, t.db_name, t.password) == ("pg.example.com", "6432", "shop@eu", "shopdb",
                                                                         "p/w")
    argv = backup.dump_cmd(t, NAME, "2026-12-01T09:17:00Z", "abc1234", "pre-migrate")
    assert argv[:4] == ["docker", "--config", "/var/lib/djdeploy/shop/docker", "run"]  # the deploy's registry login
    assert ["--env", "PGHOST=pg.example.com", "--env", "PGPORT=6432", "--env", "PGUSER=shop@eu"] == argv[14:20]
    assert "p/w" not in " ".join(argv)
