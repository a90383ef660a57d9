"""deploy.ops.oneoff (inv shell/manage --env) and deploy.ops.maintenance: exact commands, secrets only in
uploaded files, every error message verbatim. No engine, no SSH: a fake Fabric context."""

from __future__ import annotations

import io
import json

import pytest
from invoke import Result

from deploy.core.errors import ToolkitError
from deploy.core.runner import Runner
from deploy.ops import maintenance, oneoff
from tests.unit.test_ship import FakeManager, cfg  # noqa: F401  (the ship tests' env fixture)

SPEC = json.dumps({"Image": "127.0.0.1:5000/djapp:v1@sha256:abc",
                   "Env": ["APP_VERSION=v1", "DJANGO_MANAGEPY_MIGRATE=off", "DATABASE_URL_FILE=/run/secrets/database_url"],
                   "Secrets": [{"File": {"Name": "django_secret_key"}, "SecretName": "djt_django_secret_key_1"},
                               {"File": {"Name": "database_url"}, "SecretName": "djt_database_url_2"}]})


def test_parse_spec():
    image, env, files = oneoff.parse_spec(SPEC)
    assert image == "127.0.0.1:5000/djapp:v1"
    assert env["APP_VERSION"] == "v1" and files == ["django_secret_key", "database_url"]


def test_prepare_uploads_secret_files_and_builds_the_ssh_command(cfg):  # noqa: F811
    manager = FakeManager([("ContainerSpec", Result(stdout=SPEC))])
    run = Runner(ctx=manager, where="root@127.0.0.1", secrets=cfg.secrets, out=io.StringIO())
    argv = oneoff.prepare(cfg, run, ["python", "manage.py", "createsuperuser", "--noinput"], tty=False,
                          environ={"DJANGO_SUPERUSER_PASSWORD": "su-secret", "DJANGO_SUPERUSER_USERNAME": "admin",
                                   "HOME": "/root"})
    workdirs = {p.rsplit("/", 1)[0] for p in manager.files}
    assert len(workdirs) == 1
    workdir = workdirs.pop()
    name = workdir.rsplit("/", 1)[1]
    assert workdir == f"/var/lib/djdeploy/djt/{name}" and name.startswith("djt_oneoff_")
    assert sorted(p.rsplit("/", 1)[1] for p in manager.files) == ["database_url", "django_secret_key", "env"]
    assert manager.files[f"{workdir}/env"] == b"DJANGO_SUPERUSER_USERNAME=admin\nDJANGO_SUPERUSER_PASSWORD=su-secret\n"
    assert argv[:2] == ["ssh", "-T"] and argv[-2] == "root@127.0.0.1"
    assert argv[2:4] == ["-p", "2222"] and "StrictHostKeyChecking=yes" in argv
    remote = argv[-1]
    for secret in (*cfg.secrets, "su-secret"):
        assert secret not in remote and secret not in run.out.getvalue()
    assert (f"run --name {name} --rm -i --network djt_backend --label djdeploy.stack=djt --label djdeploy.role=oneoff "
            f"--volume {workdir}/django_secret_key:/run/secrets/django_secret_key:ro") in remote
    assert ("--env DJANGO_MANAGEPY_MIGRATE=off --env DATABASE_URL_FILE=/run/secrets/database_url "
            f"--env DJANGO_MANAGEPY_COLLECTSTATIC=off --env-file {workdir}/env 127.0.0.1:5000/djapp:v1 python manage.py "
            "createsuperuser --noinput") in remote
    assert remote.startswith("sh -c ") and f"oneoff {name} {workdir} --config /var/lib/djdeploy/djt/docker run" in remote


def test_tty_gets_ssh_t_and_docker_t(cfg):  # noqa: F811
    manager = FakeManager([("ContainerSpec", Result(stdout=SPEC))])
    run = Runner(ctx=manager, where="m", secrets=cfg.secrets, out=io.StringIO())
    argv = oneoff.prepare(cfg, run, ["bash"], tty=True, environ={})
    assert argv[1] == "-t" and " --rm -i -t " in argv[-1] and "--env-file" not in argv[-1]


def test_cleanup_trap_removes_container_and_dir_and_keeps_the_exit_code():
    assert 'trap \'docker rm -f "$n" >/dev/null 2>&1; rm -rf "$d"\' EXIT' in oneoff.CLEANUP
    assert oneoff.CLEANUP.endswith('docker "$@"; rc=$?; exit "$rc"')


def test_no_service_is_one_line(cfg):  # noqa: F811
    manager = FakeManager([("ContainerSpec", Result(stdout="", stderr="no such service", exited=1))])
    run = Runner(ctx=manager, where="m", secrets=cfg.secrets, out=io.StringIO())
    with pytest.raises(ToolkitError) as err:
        oneoff.prepare(cfg, run, ["bash"], tty=False, environ={})
    assert str(err.value) == "djt_app does not run on 127.0.0.1; deploy first with `inv deploy --env lab`"


def test_unknown_secret_is_one_line(cfg):  # noqa: F811
    with pytest.raises(ToolkitError) as err:
        oneoff.secret_files(cfg, ["database_url", "api_token"])
    assert str(err.value) == ("the app service of lab mounts secrets this toolkit does not know (api_token); "
                              "redeploy with `inv deploy --env lab`")


# ---- maintenance ------------------------------------------------------------------------------------

def test_maintenance_commands(cfg):  # noqa: F811
    assert maintenance.create_cmd(cfg, "C", "P", 120) == [
        "docker", "--config", "/var/lib/djdeploy/djt/docker", "service", "create", "--detach", "--with-registry-auth",
        "--name", "djt_maintenance", "--label", "com.docker.stack.namespace=djt", "--label", "djdeploy.role=maintenance",
        "--network", "name=djt_backend,alias=maintenance", "--replicas", "1", "--stop-signal", "SIGUSR1",
        "--stop-grace-period", "15s", "--env", "RETRY_AFTER=120",
        "--config", "source=C,target=/usr/local/etc/haproxy/haproxy.cfg",
        "--config", "source=P,target=/usr/local/etc/haproxy/maintenance.html", "haproxy:3.0-trixie"]
    assert maintenance.remove_cmd(cfg) == ["docker", "service", "rm", "djt_maintenance"]
    assert maintenance.front_url(cfg) == "http://127.0.0.1:18080/"
    assert maintenance.config_name(cfg, "page", "x").startswith("djt_maintpage_")


def test_page_escapes_the_message():
    assert "<p>a &lt;b&gt; &amp; c</p>" in maintenance.page("a <b> & c")
    assert maintenance.DEFAULT_MESSAGE in maintenance.page("  ")


def test_proxy_config_has_the_maintenance_backend():
    from deploy.ship.stackfile import PROXY_CFG

    text = PROXY_CFG.read_text()
    assert "use_backend maintenance if { nbsrv(maintenance) gt 0 } !{ path_beg /health/ }" in text
    assert 'server-template maintenance 1 "tasks.maintenance:8080"' in text
    page_cfg = maintenance.CFG_FILE.read_text()
    assert "grace 3s" in page_cfg and 'hdr Retry-After "${RETRY_AFTER}"' in page_cfg


def test_switch_on_creates_configs_and_service_then_waits(cfg):  # noqa: F811
    manager = FakeManager([("{{.Spec.Name}}", Result(stdout="", exited=1))])
    run = Runner(ctx=manager, where="m", secrets=cfg.secrets, out=io.StringIO())
    seen = []
    answers = iter([(200, ""), (503, "300"), (503, "300"), (503, "300")])
    out = io.StringIO()
    maintenance.switch(cfg, run, on=True, message="back soon", out=out,
                       probe=lambda url, host: seen.append((url, host)) or next(answers))
    cmds = manager.commands()
    assert cmds[1].startswith("docker config create --label com.docker.stack.namespace=djt")
    assert "back soon" in manager.calls[2][1]
    assert cmds[3].startswith("docker --config /var/lib/djdeploy/djt/docker service create")
    assert seen[0] == ("http://127.0.0.1:18080/", "127.0.0.1") and len(seen) == 4
    assert out.getvalue() == "maintenance mode on for lab (503 + Retry-After on every page but /health/)\n"


def test_switch_errors(cfg):  # noqa: F811
    on = FakeManager([("{{.Spec.Name}}", Result(stdout="djt_maintenance\n"))])
    run = Runner(ctx=on, where="m", secrets=cfg.secrets, out=io.StringIO())
    with pytest.raises(ToolkitError) as err:
        maintenance.switch(cfg, run, on=True)
    assert str(err.value) == ("maintenance mode is already on for lab; to change the page, "
                              "`inv maintenance off --env lab` first")
    off = FakeManager([("{{.Spec.Name}}", Result(stdout="", exited=1))])
    out = io.StringIO()
    maintenance.switch(cfg, Runner(ctx=off, where="m", out=io.StringIO()), on=False, out=out)
    assert out.getvalue() == "maintenance mode is already off for lab\n"
    with pytest.raises(ToolkitError) as err:
        maintenance.check_retry_after("soon")
    assert str(err.value) == "--retry-after 'soon': give seconds from 1 to 86400, e.g. --retry-after 300"


def test_wait_front_times_out_with_one_line(cfg):  # noqa: F811
    ticks = iter(range(0, 1000, 30))
    with pytest.raises(ToolkitError) as err:
        maintenance.wait_front(cfg, True, probe=lambda u, h: (200, ""), clock=lambda: next(ticks), sleep=lambda s: None)
    assert str(err.value) == ("maintenance mode on: http://127.0.0.1:18080/ did not switch within 60s (last answer: "
                              "(200, '')); is the proxy deployed with this toolkit's haproxy.cfg? Check "
                              "`inv status --env lab`")


def test_proxy_off_is_refused(cfg, tmp_path):  # noqa: F811
    import dataclasses

    off = dataclasses.replace(cfg, proxy=False)
    with pytest.raises(ToolkitError) as err:
        maintenance.switch(off, Runner(ctx=FakeManager(), out=io.StringIO()), on=True)
    assert str(err.value) == (f"maintenance mode needs the stack's front proxy, and {cfg.source} sets PROXY=off; "
                              "set PROXY=on and deploy once")


# ---- scheduled backups -------------------------------------------------------------------------------

def test_backup_service_in_the_stack_only_when_scheduled(cfg):  # noqa: F811
    import dataclasses

    from deploy.ops import backup, schedule
    from deploy.ship import stackfile

    assert "backup" not in stackfile.stack_spec(cfg, "img", "v1", "r", "p")["services"]
    on = dataclasses.replace(cfg, backup_schedule=True, backup_interval=3600, backup_keep_daily=3, backup_keep_weekly=2)
    svc = stackfile.stack_spec(on, "img", "v1", "r", "p")["services"]["backup"]
    assert svc == schedule.service(on, "v1")
    assert svc["image"] == "postgres:17-trixie" and svc["deploy"]["placement"]["constraints"] == ["node.role == manager"]
    assert svc["volumes"] == [{"type": "bind", "source": "/var/lib/djdeploy/djt/backups", "target": "/backups"}]
    assert svc["secrets"] == [{"source": "postgres_password", "target": "postgres_password"}]
    env = svc["environment"]
    assert (env["BACKUP_INTERVAL"], env["BACKUP_POLL"], env["KEEP_DAILY"], env["KEEP_WEEKLY"], env["RELEASE"]) == (
        "3600", "60", "3", "2", "v1")
    assert env["DUMP_SCRIPT"] == backup.DUMP_SCRIPT.replace("$", "$$")  # the stack file interpolates $
    assert svc["entrypoint"][2] == schedule.LOOP.replace("$", "$$") and svc["healthcheck"] == {"disable": True}
    assert "pgsecret" not in stackfile.render(stackfile.stack_spec(on, "img", "v1", "r", "p"))


def test_backup_settings_are_validated(tmp_path):
    from shipfakes import make_cfg

    from deploy.core.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        make_cfg(tmp_path, "BACKUP_SCHEDULE=daily\nBACKUP_KEEP_DAILY=0\n")
    text = str(err.value)
    assert "BACKUP_SCHEDULE must be one of on, off (got 'daily')" in text
    assert "BACKUP_KEEP_DAILY must be a whole number from 1 to 366 (got '0')" in text
    cfg = make_cfg(tmp_path, "BACKUP_SCHEDULE=on\n")
    assert (cfg.backup_schedule, cfg.backup_interval, cfg.backup_keep_daily, cfg.backup_keep_weekly) == (True, 86400, 7, 4)


def test_local_manage_passes_superuser_variables_by_name_only(tmp_path):
    from deploy.local import compose

    s = compose.StackSettings("djx", ("docker-compose.yml",), "djapp", 8000, "postgres:17-trixie", (), tmp_path)
    argv = compose.run_argv(s, "djapp:v1", ["python", "manage.py", "createsuperuser", "--noinput"], tty=False,
                            pass_env=("DJANGO_SUPERUSER_USERNAME", "DJANGO_SUPERUSER_PASSWORD"))
    at = argv.index("run")
    assert argv[at:at + 9] == ["run", "--rm", "--env", "DJANGO_MANAGEPY_MIGRATE=off", "--env",
                               "DJANGO_SUPERUSER_USERNAME", "--env", "DJANGO_SUPERUSER_PASSWORD", "--no-TTY"]


def test_an_https_front_is_probed_with_sni_and_the_health_ca(cfg, monkeypatch):  # noqa: F811
    import dataclasses

    from deploy.ship import wait

    seen = []

    def fake(url, host, cafile="", timeout=3.0, header="X-App-Version"):
        seen.append((url, host, cafile, timeout, header))
        return 503, "120"

    monkeypatch.setattr(wait, "probe_https", fake)
    tls = dataclasses.replace(cfg, health_url="https://127.0.0.1:8443/health/?ready=1", health_host="shop.test",
                              health_ca_file="/ca/root.pem")
    maintenance.wait_front(tls, True, sleep=lambda s: None)
    assert seen[0] == ("https://127.0.0.1:8443/", "shop.test", "/ca/root.pem", 5, "Retry-After") and len(seen) == 3
    monkeypatch.setattr(wait, "probe_https", lambda *a, **k: (0, "certificate verify failed"))
    assert maintenance.probe_front("https://127.0.0.1:8443/", "shop.test") == (0, "")
