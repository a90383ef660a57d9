"""The stack tasks as `inv` runs them (MockContext, no engine): exact commands, order, every user-facing error."""

import io
import json
import shlex
import sys
import types

import pytest
from invoke import Exit, MockContext, Result

import tasks
from deploy.local import compose, image_pin, lifecycle, localenv
from deploy.local.compose import StackSettings
from deploy.tasks import local

REAL_LOAD = localenv.load
S = StackSettings.from_values(dict(localenv.DEFAULTS), root=compose.ROOT, environ={})
PREFLIGHT = {shlex.join(compose.compose_version_argv()): Result("2.40.3\n"),
             shlex.join(compose.engine_version_argv()): Result("20.10.24\n")}
PS = shlex.join(compose.ps_argv(S, as_json=True))
RUNNING = "\n".join(json.dumps(r) for r in [
    {"Service": "app", "Name": "djapp-app-1", "State": "running", "Health": "healthy", "ExitCode": 0,
     "Image": "djapp:abc1234", "Publishers": [{"URL": "127.0.0.1", "TargetPort": 8000, "PublishedPort": 8000}]},
    {"Service": "db", "Name": "djapp-db-1", "State": "running", "Health": "healthy", "ExitCode": 0,
     "Image": "postgres:17-trixie", "Publishers": []}])


@pytest.fixture(autouse=True)
def defaults_only(monkeypatch):
    """The developer's own .env and environment do not leak into these tests."""
    monkeypatch.setattr(localenv, "load", lambda *a, **k: dict(localenv.DEFAULTS))
    for key in ("DJANGO_SECRET_KEY", "POSTGRES_PASSWORD"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def execs(monkeypatch):
    calls = []

    def fake_execvp(file, argv):
        calls.append(argv)
        raise SystemExit(0)

    monkeypatch.setattr(local.os, "execvp", fake_execvp)
    return calls


def ctx(**more):
    return MockContext(run={**PREFLIGHT, **more})


def commands(c):
    return [call.args[0] for call in c.run.call_args_list]


def test_down_keeps_the_data():
    c = ctx(**{shlex.join(compose.down_argv(S)): Result()})
    tasks.ns["down"](c)
    assert commands(c)[-1] == shlex.join(compose.down_argv(S))


def test_down_volumes_needs_confirmation_without_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    c = ctx()
    with pytest.raises(Exit) as err:
        tasks.ns["down"](c, volumes=True)
    assert err.value.message == ("error: refusing to delete the volumes of project djapp (its database) without "
                                 "confirmation; pass --yes to confirm")
    assert not any("down" in cmd for cmd in commands(c))


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_down_volumes_asks_and_a_no_changes_nothing(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", Tty("no\n"))
    c = ctx()
    with pytest.raises(Exit) as err:
        tasks.ns["down"](c, volumes=True)
    assert err.value.message == "error: nothing deleted (not confirmed); the stack and its data are unchanged"
    assert "This will delete the volumes of project djapp (its database). It cannot be undone." in capsys.readouterr().out
    assert not any("down" in cmd for cmd in commands(c))


def test_down_volumes_after_yes(monkeypatch):
    monkeypatch.setattr(sys, "stdin", Tty("yes\n"))
    down = shlex.join(compose.down_argv(S, volumes=True))
    c = ctx(**{down: Result()})
    tasks.ns["down"](c, volumes=True)
    assert commands(c)[-1] == down


def test_down_volumes_yes_flag_skips_the_question(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    down = shlex.join(compose.down_argv(S, volumes=True))
    c = ctx(**{down: Result()})
    tasks.ns["down"](c, volumes=True, yes=True)
    assert commands(c)[-1] == down


def test_malformed_env_file_names_file_and_line(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("APP_PORT=8001\nthis is not a setting\n")
    monkeypatch.setattr(localenv, "load", lambda *a, **k: REAL_LOAD(tmp_path, {}))
    c = ctx()
    with pytest.raises(Exit) as err:
        tasks.ns["ps"](c)
    assert err.value.message == (f"error: invalid configuration in {tmp_path / '.env'}:\n"
                                 f"  - {tmp_path / '.env'}:2: cannot parse this line (expected KEY=value)")
    assert commands(c) == []


def test_bad_settings_fail_before_any_command(monkeypatch):
    monkeypatch.setattr(localenv, "load", lambda *a, **k: dict(localenv.DEFAULTS, APP_PORT="http"))
    c = ctx()
    with pytest.raises(Exit) as err:
        tasks.ns["up"](c)
    assert err.value.message == ("error: invalid configuration in .env / environment:\n"
                                 "  - APP_PORT='http': give a TCP port number between 1 and 65535")
    assert commands(c) == []


def test_compose_missing_stops_every_task_with_one_line():
    c = MockContext(run={shlex.join(compose.compose_version_argv()): Result(
        stderr="docker: unknown command: docker compose\n", exited=1)})
    for name in ("up", "down", "ps", "logs", "migrate"):
        with pytest.raises(Exit) as err:
            tasks.ns[name](c)
        assert err.value.message.startswith("error: `docker compose` (the Compose v2 CLI plugin) is not available")
        assert err.value.message.endswith("run `inv lab.up`: it installs the engine and links the compose plugin)")


def test_ps_and_logs():
    c = ctx(**{shlex.join(compose.ps_argv(S)): Result("NAME\n"),
               shlex.join(compose.logs_argv(S, "db", tail=20)): Result("db-1 | ready\n")})
    tasks.ns["ps"](c)
    tasks.ns["logs"](c, service="db", tail="20")
    assert commands(c)[-1] == shlex.join(compose.logs_argv(S, "db", tail=20))


def test_logs_follow_hands_the_terminal_to_compose(execs):
    with pytest.raises(SystemExit):
        tasks.ns["logs"](ctx(), follow=True)
    assert execs == [compose.logs_argv(S, follow=True)]


def test_logs_bad_tail():
    with pytest.raises(Exit) as err:
        tasks.ns["logs"](ctx(), tail="all")
    assert err.value.message == "error: --tail 'all': give a number of lines, e.g. --tail 50"


def test_logs_env_delegates_to_the_swarm_logs(monkeypatch):
    seen = []
    monkeypatch.setitem(sys.modules, "deploy.ship.logs", types.SimpleNamespace(logs=lambda env, follow: seen.append((env, follow))))
    c = MockContext()
    tasks.ns["logs"](c, env="staging", follow=True)
    assert seen == [("staging", True)]


def test_logs_env_refuses_service_and_tail():
    with pytest.raises(Exit) as err:
        tasks.ns["logs"](MockContext(), service="app", env="staging")
    assert err.value.message == "error: --env shows every service of the environment; drop --service and --tail"


def test_remainder_keeps_quoting():
    assert local.remainder(["inv", "manage", "--", "shell", "-c", "print('a b')"]) == ["shell", "-c", "print('a b')"]
    assert local.remainder(["inv", "manage"]) == []


def test_shell_runs_a_one_off_container_of_the_running_image(monkeypatch, execs):
    monkeypatch.setattr(sys, "argv", ["inv", "shell"])
    with pytest.raises(SystemExit):
        tasks.ns["shell"](ctx(**{PS: Result(RUNNING)}), command="echo hi")
    assert execs == [compose.run_argv(S, "djapp:abc1234", ["bash", "-c", "echo hi"], tty=False)]


def test_shell_django_with_args_after_dashes(monkeypatch, execs):
    monkeypatch.setattr(sys, "argv", ["inv", "shell", "--django", "--", "-c", "print(1)"])
    with pytest.raises(SystemExit):
        tasks.ns["shell"](ctx(**{PS: Result(RUNNING)}), django=True)
    assert execs[0][-6:] == ["app", "python", "manage.py", "shell", "-c", "print(1)"]


def test_shell_needs_the_stack_up(monkeypatch, execs):
    monkeypatch.setattr(sys, "argv", ["inv", "shell"])
    with pytest.raises(Exit) as err:
        tasks.ns["shell"](ctx(**{PS: Result("")}))
    assert err.value.message == "error: the stack is not up (project djapp has no app container); run `inv up` first"
    assert execs == []


def test_manage_passes_the_arguments(monkeypatch, execs):
    monkeypatch.setattr(sys, "argv", ["inv", "manage", "--", "check", "--deploy"])
    with pytest.raises(SystemExit):
        tasks.ns["manage"](ctx(**{PS: Result(RUNNING)}))
    assert execs == [compose.run_argv(S, "djapp:abc1234", ["python", "manage.py", "check", "--deploy"], tty=False)]


def test_manage_without_arguments_runs_nothing(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["inv", "manage"])
    c = MockContext()
    with pytest.raises(Exit) as err:
        tasks.ns["manage"](c)
    assert err.value.message == "error: no manage.py command given; pass it after --, e.g. `inv manage -- showmigrations`"


def test_migrate_plan_then_apply():
    plan = shlex.join(compose.run_argv(S, "djapp:abc1234", ["python", "manage.py", "migrate", "--plan"], tty=False))
    apply = shlex.join(compose.run_argv(S, "djapp:abc1234", ["python", "manage.py", "migrate", "--noinput"], tty=False))
    c = ctx(**{PS: Result(RUNNING), plan: Result("Planned operations:\n"), apply: Result("No migrations to apply.\n")})
    tasks.ns["migrate"](c, plan=True)
    assert commands(c)[-2:] == [plan, apply]


def test_up_in_order_and_prints_the_url(monkeypatch, capsys):
    monkeypatch.setattr(image_pin, "ensure", lambda runner, s, tag: "djapp:abc1234")
    monkeypatch.setattr(lifecycle, "probe_health", lambda url: True)
    monkeypatch.setattr(lifecycle, "port_in_use", lambda port: False)
    pg = shlex.join(compose.image_id_argv("postgres:17-trixie"))
    up = shlex.join(compose.up_argv(S, "djapp:abc1234"))
    c = ctx(**{PS: Result(""), pg: Result("sha256:pg\n"), up: Result()})
    tasks.ns["up"](c)
    assert commands(c) == list(PREFLIGHT) + [PS, pg, up]
    assert capsys.readouterr().out.splitlines()[-1] == "ready: http://127.0.0.1:8000/ (djapp:abc1234, project djapp)"


def test_up_with_the_port_taken_builds_and_starts_nothing(monkeypatch):
    monkeypatch.setattr(lifecycle, "port_in_use", lambda port: True)
    monkeypatch.setattr(image_pin, "ensure", lambda *a: pytest.fail("must not build"))
    c = ctx(**{PS: Result("")})
    with pytest.raises(Exit) as err:
        tasks.ns["up"](c)
    assert err.value.message.startswith("error: port 8000 on 127.0.0.1 is already in use; stop what listens there, "
                                        "or set APP_PORT to a free port in .env or the environment (e.g. APP_PORT=")
    assert commands(c) == list(PREFLIGHT) + [PS]


def test_up_timeout_must_be_positive():
    c = ctx()
    with pytest.raises(Exit) as err:
        tasks.ns["up"](c, timeout=0)
    assert err.value.message == "error: --timeout 0: give a positive number of seconds, e.g. --timeout 120"
    assert commands(c) == []
