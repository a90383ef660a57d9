"""`inv up --dev` without an engine: the override file, the image it runs, the reloader, the exact commands."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from invoke import Exit, MockContext, Result

import tasks
from deploy.local import compose, image_pin, lifecycle, localenv
from deploy.local.compose import StackSettings

ROOT = compose.ROOT
S = StackSettings.from_values(dict(localenv.DEFAULTS), root=ROOT, environ={})
DEV = compose.with_dev(S)
sys.path.insert(0, str(ROOT / "deploy" / "local" / "devserver"))
from djdeploy_dev import reloader  # noqa: E402


@pytest.fixture(autouse=True)
def defaults_only(monkeypatch):
    monkeypatch.setattr(localenv, "load", lambda *a, **k: dict(localenv.DEFAULTS))
    for key in ("DJANGO_SECRET_KEY", "POSTGRES_PASSWORD"):
        monkeypatch.delenv(key, raising=False)


def test_dev_adds_the_override_file_last():
    assert DEV.files == ("docker-compose.yml", "docker-compose.dev.yml")
    argv = compose.up_argv(DEV, "djapp:latest")
    assert argv[argv.index("--file"):argv.index("up") + 2] == [
        "--file", str(ROOT / "docker-compose.yml"), "--file", str(ROOT / "docker-compose.dev.yml"), "up", "--detach"]
    assert compose.with_dev(DEV).files == DEV.files  # never twice


def test_dev_without_the_override_file_is_one_line(tmp_path):
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")
    s = StackSettings.from_values(dict(localenv.DEFAULTS), root=tmp_path, environ={})
    with pytest.raises(Exception) as err:
        compose.with_dev(s)
    assert str(err.value) == (f"docker-compose.dev.yml is missing under {tmp_path}; `inv up --dev` needs it "
                              "(restore it from git)")


def _config(tmp_path, *files):
    from deploy.lab.host import compose_binary

    empty = tmp_path / "empty.env"
    empty.write_text("")
    argv = [str(compose_binary()), "--project-directory", str(ROOT), "--env-file", str(empty)]
    for name in files:
        argv += ["--file", str(ROOT / name)]
    out = subprocess.run(argv + ["config", "--format", "json"], capture_output=True, text=True, timeout=60,
                         env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["services"]


def test_the_override_mounts_the_source_read_only_and_changes_nothing_else(tmp_path):
    base = _config(tmp_path, "docker-compose.yml")
    dev = _config(tmp_path, "docker-compose.yml", "docker-compose.dev.yml")
    assert dev["db"] == base["db"]                      # Postgres exactly as in the production-like stack
    assert "volumes" not in base["app"]                  # `inv up` without --dev mounts nothing
    assert [(v["source"], v["target"], v["read_only"]) for v in dev["app"]["volumes"]] == [
        (str(ROOT / "project"), "/app", True), (str(ROOT / "deploy/local/devserver"), "/opt/djdeploy-dev", True)]
    assert dev["app"]["environment"]["DJANGO_SETTINGS_MODULE"] == "djdeploy_dev.settings"
    def rest(app):
        return {k: v for k, v in app.items() if k not in ("volumes", "environment")}
    assert rest(dev["app"]) == rest(base["app"])         # same image, ports, limits, health check, command
    added = {k: v for k, v in dev["app"]["environment"].items() if base["app"]["environment"].get(k) != v}
    assert sorted(added) == ["DJANGO_SETTINGS_MODULE", "PYTHONPATH", "UWSGI_FORKBOMB_DELAY", "UWSGI_STATIC_MAP",
                             "UWSGI_STATIC_SAFE", "UWSGI_WORKERS"]


def test_dev_image_runs_latest_without_building():
    said = []
    r = lifecycle.Runner(ctx=MockContext(run={shlex.join(compose.image_id_argv("djapp:latest")): Result("sha256:1\n")}),
                         echo=False)
    ref = image_pin.dev_image(r, S, build=lambda **kw: pytest.fail("must not build"), say=said.append)
    assert ref == "djapp:latest"
    assert said == [f"image: djapp:latest with the source mounted from {ROOT / 'project'} (edits reload; no build)"]


def test_dev_image_builds_once_when_there_is_none(monkeypatch):
    monkeypatch.setattr("deploy.core.gitinfo.current_tag", lambda root=None: "abc1234")
    r = lifecycle.Runner(ctx=MockContext(run={shlex.join(compose.image_id_argv("djapp:latest")): Result(exited=1)}),
                         echo=False)
    built = []
    ref = image_pin.dev_image(r, S, build=lambda tag: built.append(tag) or type("B", (), {"ref": f"djapp:{tag}"})(),
                              say=lambda m: None)
    assert (ref, built) == ("djapp:abc1234", ["abc1234"])


def test_up_dev_runs_the_override_and_says_so(monkeypatch, capsys):
    monkeypatch.setattr(image_pin, "dev_image", lambda runner, s: "djapp:latest")
    monkeypatch.setattr(image_pin, "ensure", lambda *a: pytest.fail("--dev never runs the build check"))
    monkeypatch.setattr(lifecycle, "probe_health", lambda url: True)
    monkeypatch.setattr(lifecycle, "port_in_use", lambda port: False)
    preflight = {shlex.join(compose.compose_version_argv()): Result("2.40.3\n"),
                 shlex.join(compose.engine_version_argv()): Result("20.10.24\n")}
    ps = shlex.join(compose.ps_argv(DEV, as_json=True))
    pg = shlex.join(compose.image_id_argv("postgres:17-trixie"))
    up = shlex.join(compose.up_argv(DEV, "djapp:latest"))
    c = MockContext(run={**preflight, ps: Result(""), pg: Result("sha256:pg\n"), up: Result()})
    tasks.ns["up"](c, dev=True)
    assert [call.args[0] for call in c.run.call_args_list] == list(preflight) + [ps, pg, up]
    assert capsys.readouterr().out.splitlines()[-1] == (
        "ready: http://127.0.0.1:8000/ (djapp:latest, project djapp, dev: project/ mounted, reloads on save)")


def test_up_dev_with_tag_is_allowed_and_runs_that_tag(monkeypatch):
    monkeypatch.setattr(image_pin, "pinned", lambda runner, s, tag: f"djapp:{tag}")
    monkeypatch.setattr(lifecycle, "probe_health", lambda url: True)
    monkeypatch.setattr(lifecycle, "port_in_use", lambda port: False)
    monkeypatch.setattr(lifecycle, "check_postgres_image", lambda runner, s: None)
    started = []
    monkeypatch.setattr(lifecycle, "start", lambda runner, s, ref, timeout: started.append((s.files, ref)))
    monkeypatch.setattr(lifecycle, "containers", lambda runner, s: [])
    monkeypatch.setattr(lifecycle, "preflight", lambda runner: None)
    tasks.ns["up"](MockContext(), dev=True, tag="abc1234")
    assert started == [(DEV.files, "djapp:abc1234")]


def test_reloader_sees_a_saved_file_and_ignores_untouched_ones(tmp_path):
    (tmp_path / "pkg").mkdir()
    views = tmp_path / "pkg" / "views.py"
    views.write_text("x = 1\n")
    (tmp_path / "notes.txt").write_text("not python\n")
    seen = []
    thread = threading.Thread(target=reloader.watch, args=([tmp_path], 0.02, seen.append), daemon=True)
    thread.start()
    time.sleep(0.1)
    (tmp_path / "notes.txt").write_text("still not python\n")
    time.sleep(0.1)
    assert seen == []
    views.write_text("x = 2\n")
    thread.join(timeout=5)
    assert seen == [str(views)]


def test_reloader_does_nothing_outside_uwsgi():
    assert "uwsgi" not in sys.modules
    assert reloader.start([Path("/nonexistent")]) is None
