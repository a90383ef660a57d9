"""The local stack against the real engine, through the real `inv` command line (issue 4's proof)."""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import sys
import urllib.request
from pathlib import Path

import pexpect
import pytest


pytestmark = pytest.mark.engine
ROOT = Path(__file__).resolve().parents[2]
direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an http_proxy: loopback only


def containers(stack) -> dict:
    rows = stack.compose("ps", "--all", "--format", "json").stdout.strip().splitlines()
    return {r["Service"]: r for r in map(json.loads, rows) if "-run-" not in r["Name"]}


def volume_exists(docker_client, name) -> bool:
    return any(v.name == name for v in docker_client.volumes.list(filters={"name": name}))


def test_data_survives_down_and_up_and_down_volumes_drops_it(up, docker_client, browser):
    stack = up
    note = f"note-{secrets.token_hex(6)}"
    page = browser(stack).add_note(note)
    assert f"<li>{note}</li>" in page

    stack.inv("down")
    assert containers(stack) == {}
    assert volume_exists(docker_client, f"{stack.project}_pgdata")

    out = stack.up()
    assert f"ready: {stack.url()}" in out.stdout
    assert f"<li>{note}</li>" in browser(stack).get("/")

    stack.inv("down", "--volumes", "--yes")
    assert not volume_exists(docker_client, f"{stack.project}_pgdata")
    stack.up()
    assert note not in browser(stack).get("/")


def test_down_volumes_without_yes_refuses_and_keeps_everything(up, docker_client):
    out = up.inv("down", "--volumes", check=False)
    assert out.returncode == 1
    assert out.stderr.strip() == (f"error: refusing to delete the volumes of project {up.project} (its database) "
                                  "without confirmation; pass --yes to confirm")
    assert containers(up)["app"]["State"] == "running"
    assert volume_exists(docker_client, f"{up.project}_pgdata")


def test_second_up_is_idempotent(up):
    before = {svc: c["ID"] for svc, c in containers(up).items()}
    out = up.up()
    assert {svc: c["ID"] for svc, c in containers(up).items()} == before, out.stdout + out.stderr
    assert "building" not in out.stdout, out.stdout
    assert "Recreate" not in out.stderr and "Started" not in out.stderr, out.stderr


def test_up_follow_tails_new_log_lines_until_ctrl_c(up):
    child = pexpect.spawn(sys.executable, ["-m", "invoke", "up", "--follow", "--tag", up.tag], cwd=str(ROOT), env=up.env,
                          encoding="utf-8", timeout=60)
    try:
        child.expect(re.escape(f"ready: {up.url()}"))
        child.expect(r"logs --follow --tail 0")
        marker = f"/missing-{secrets.token_hex(4)}"
        deadline_hits = 0
        while True:  # uWSGI logs 4xx responses: request until the line shows up (compose may attach late)
            try:
                direct.open(up.url(marker), timeout=5)
            except urllib.error.HTTPError as exc:
                assert exc.code == 404
            try:
                child.expect(re.escape(marker), timeout=2)
                break
            except pexpect.TIMEOUT:
                deadline_hits += 1
                assert deadline_hits < 15, "the 404 never showed up in the followed logs"
        child.sendintr()
        child.expect(pexpect.EOF, timeout=30)
    finally:
        child.close(force=True)
    assert up.password not in (child.before or "")
    assert containers(up)["app"]["State"] == "running"  # Ctrl-C stopped the tailing, not the stack


def test_shell_runs_a_command_non_interactively(up):
    out = up.inv("shell", "--command", "echo $((6*7)); id -u; pwd")
    assert out.stdout.split() == ["42", "10001", "/app"]
    out = up.inv("shell", "--django", "--command", "from django.conf import settings; print(settings.DATABASES['default']['HOST'])")
    assert out.stdout.strip().splitlines()[-1] == "db"
    out = up.inv("shell", "--", "sh", "-c", "exit 7", check=False)
    assert out.returncode == 7


def test_shell_interactive_gets_a_real_terminal(up):
    child = pexpect.spawn(sys.executable, ["-m", "invoke", "shell"], cwd=str(ROOT), env=up.env, encoding="utf-8",
                          timeout=90, dimensions=(40, 160))
    try:
        child.expect(r"app@[0-9a-f]+:[^\r\n]*\$ ")
        child.sendline("test -t 0 && echo \"tty-$(( 1300 + 37 ))\"")
        child.expect("tty-1337")
        child.sendline("exit 5")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 5


def test_django_shell_interactive(up):
    child = pexpect.spawn(sys.executable, ["-m", "invoke", "shell", "--django"], cwd=str(ROOT), env=up.env,
                          encoding="utf-8", timeout=90, dimensions=(40, 160))
    try:
        child.expect(">>> ")
        child.sendline("print('sum', 20 + 22)")
        child.expect("sum 42")
        child.sendline("exit()")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_migrate_on_an_up_to_date_database_is_a_no_op_and_check_passes(up):
    out = up.inv("migrate", "--plan")
    assert "No planned migration operations." in out.stdout
    assert "No migrations to apply." in out.stdout
    assert out.stdout.index("No planned migration operations.") < out.stdout.index("No migrations to apply.")
    out = up.inv("manage", "--", "check")
    assert "System check identified no issues" in out.stdout
    out = up.inv("manage", "--", "showmigrations", "notes")
    assert re.search(r"^ \[X\] 0001_initial", out.stdout, re.M)


def test_logs_and_ps(up):
    out = up.inv("ps")
    assert f"{up.project}-app-1" in out.stdout and f"{up.project}-db-1" in out.stdout and "(healthy)" in out.stdout
    out = up.inv("logs", "--service", "db", "--tail", "50")
    assert "database system is ready to accept connections" in out.stdout
    assert "app-1" not in out.stdout


def test_port_taken_is_refused_before_anything_starts(stack_session, request):
    stack = stack_session("port")
    request.node.stacks.append(stack)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", stack.port))
        sock.listen()
        out = stack.inv("up", check=False)
    assert out.returncode == 1
    line = out.stderr.strip()
    assert re.fullmatch(rf"error: port {stack.port} on 127\.0\.0\.1 is already in use; stop what listens there, or "
                        r"set APP_PORT to a free port in \.env or the environment \(e\.g\. APP_PORT=\d+\)", line), line
    assert containers(stack) == {}


@pytest.fixture
def fake_db_image(docker_client):
    """A 'Postgres' that runs, logs a line and never turns healthy (pg_isready is missing in it)."""
    import io

    tag = f"djdeploy-test-fakedb:{os.getpid()}"
    dockerfile = ('FROM debian:13.7-slim\n'
                  'CMD ["sh", "-c", "echo fake-postgres: stuck in recovery; exec sleep infinity"]\n')
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, labels={"djdeploy.test": "stack"},
                               rm=True, forcerm=True)
    yield tag
    docker_client.images.remove(tag, force=True)


def test_postgres_not_healthy_in_time_names_db_and_shows_its_logs(up, stack_session, request, fake_db_image):
    stack = stack_session("baddb", POSTGRES_IMAGE=fake_db_image)
    request.node.stacks.append(stack)
    try:
        out = stack.inv("up", "--timeout", "12", "--tag", up.tag, check=False, timeout=300)
        assert out.returncode == 1
        assert "error: service db is not healthy: the stack did not start within 12s. Last log lines of db:" in out.stderr
        assert "fake-postgres: stuck in recovery" in out.stderr
        assert "(see all with: inv logs db)" in out.stderr
        assert containers(stack)["app"]["State"] == "created"  # the app never starts before Postgres is healthy
    finally:
        stack.down()


def test_app_that_cannot_start_fails_fast_with_its_logs(up, stack_session, request):
    stack = stack_session("badapp", DJANGO_ALLOWED_HOSTS="http://bad host/")
    request.node.stacks.append(stack)
    try:
        out = stack.inv("up", "--timeout", "90", "--tag", up.tag, check=False, timeout=300)
        assert out.returncode == 1
        assert re.search(r"error: service app is not healthy: its container (exited with code \d+|is restarting)",
                         out.stderr), out.stderr
        assert "DJANGO_ALLOWED_HOSTS" in out.stderr.split("Last log lines of app:")[1]
    finally:
        stack.down()


def test_no_engine_is_one_line_naming_the_lab_task(stack_session):
    stack = stack_session("noengine", DOCKER_HOST="unix:///nonexistent/docker.sock")
    for task in ("up", "ps", "down"):
        out = stack.inv(task, check=False)
        assert out.returncode == 1
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: no Docker engine answers (")
        assert lines[0].endswith("; start Docker with the compose plugin (or, for this repository's test lab, run "
                                 "`inv lab.up`: it installs the engine and links the compose plugin)")


def test_compose_missing_is_one_line_naming_the_lab_task(stack_session, tmp_path):
    stack = stack_session("nocompose", DOCKER_CONFIG=str(tmp_path), HOME=str(tmp_path))
    probe = stack.compose("version", check=False)
    if probe.returncode == 0:
        pytest.skip("a system-wide compose plugin is installed; it cannot be hidden from this test")
    out = stack.inv("up", check=False)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: `docker compose` (the Compose v2 CLI plugin) is not available")
    assert lines[0].endswith("run `inv lab.up`: it installs the engine and links the compose plugin)")


def test_malformed_env_file_names_file_and_line(stack_session, tmp_path):
    """Uses a copy of the project (its own .env) so the developer's .env is never touched."""
    import shutil

    copy = tmp_path / "proj"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", "__pycache__", ".pytest_cache", "project"))
    (copy / ".env").write_text("APP_PORT=8001\nAPP_IMAGE djapp\n")
    stack = stack_session("badenv")
    out = __import__("subprocess").run([sys.executable, "-m", "invoke", "ps"], cwd=copy, env=stack.env, text=True,
                                       capture_output=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [f"error: invalid configuration in {copy / '.env'}:",
                                               f"  - {copy / '.env'}:2: cannot parse this line (expected KEY=value)"]


def test_up_builds_when_missing_or_stale_and_runs_what_it_built(stack_session, request, tmp_path, docker_client):
    """On a clone of the tree under test, with a private image repository and state file: a clean tree builds
    <sha> once; an edit makes the tree dirty and builds <sha>-dirty, which then serves the edit; a second edit
    rebuilds; an unchanged tree reuses."""
    import subprocess

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    sha = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=clone, capture_output=True, text=True,
                         check=True).stdout.strip()
    repo = f"djdeploy-test-stack{os.getpid()}"
    stack = stack_session("build", APP_IMAGE=repo, XDG_CACHE_HOME=str(tmp_path / "cache"))
    request.node.stacks.append(stack)
    template = clone / "project" / "notes" / "templates" / "notes" / "index.html"
    original = template.read_text()

    built = set()

    def up_in_clone():
        out = stack.inv("up", "--timeout", "120", cwd=clone).stdout
        built.update(i.id for i in docker_client.images.list(name=repo))  # a moved tag leaves the old one untagged
        return out

    def page():
        with direct.open(stack.url("/"), timeout=10) as resp:
            return resp.read().decode()

    try:
        out = up_in_clone()
        assert f"image: building {repo}:{sha}: no image {repo}:{sha} yet" in out
        assert f"image: {repo}:{sha} (up to date)" in up_in_clone()

        template.write_text(original.replace("<h1>Notes</h1>", "<h1>Notes</h1><!-- edit-one -->"))
        out = up_in_clone()
        assert f"image: building {repo}:{sha}-dirty: no image {repo}:{sha}-dirty yet" in out
        assert "<!-- edit-one -->" in page()
        assert f"image: {repo}:{sha}-dirty (up to date)" in up_in_clone()

        template.write_text(original.replace("<h1>Notes</h1>", "<h1>Notes</h1><!-- edit-two -->"))
        out = up_in_clone()
        assert f"image: building {repo}:{sha}-dirty: the build context changed since {repo}:{sha}-dirty was built" in out
        body = page()
        assert "<!-- edit-two -->" in body and "<!-- edit-one -->" not in body
    finally:
        stack.down()
        built.update(i.id for i in docker_client.images.list(name=repo))
        for image_id in built:
            try:
                docker_client.images.remove(image_id, force=True)
            except Exception:  # already gone with an earlier id's tags
                pass
