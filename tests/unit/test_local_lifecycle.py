"""deploy.local.lifecycle and deploy.local.image_pin: preflight, port check, image decision, health wait, failure reports."""

import io
import json
import re
import shlex
import socket

import pytest
from invoke import MockContext, Result

from deploy.local import compose, image_pin, lifecycle, localenv
from deploy.local.compose import StackSettings
from deploy.local.lifecycle import Clock, PortInUse, StackUnhealthy
from deploy.core.errors import EngineUnavailable, ToolkitError
from deploy.core.runner import REDACTED, Runner

S = StackSettings.from_values(dict(localenv.DEFAULTS), root=compose.ROOT, environ={})
PS = shlex.join(compose.ps_argv(S, as_json=True))
VERSION = shlex.join(compose.compose_version_argv())
ENGINE = shlex.join(compose.engine_version_argv())


def logs_cmd(service):
    return shlex.join(compose.logs_argv(S, service, tail=lifecycle.LOG_LINES))


def ps_rows(*rows):
    return "\n".join(json.dumps({"Service": svc, "Name": f"djapp-{svc}-1", "State": state, "Health": health,
                                 "ExitCode": code, "Image": "djapp:abc", "Publishers": [
                                     {"URL": "127.0.0.1", "TargetPort": 8000, "PublishedPort": p, "Protocol": "tcp"}
                                     for p in ports]})
                     for svc, state, health, code, ports in rows)


def runner(run, secrets=S.secrets):
    out = io.StringIO()
    return Runner(ctx=MockContext(run=run), secrets=secrets, out=out)


# ---- preflight --------------------------------------------------------------------------------------------

def test_preflight_passes_quietly():
    r = runner({VERSION: Result("2.40.3\n"), ENGINE: Result("20.10.24\n")})
    lifecycle.preflight(r)
    assert r.out.getvalue() == ""
    assert [c for _, c in r.history] == [VERSION, ENGINE]


def test_compose_missing_is_one_line_naming_the_lab():
    r = runner({VERSION: Result(stderr="docker: unknown command: docker compose\n", exited=1)})
    with pytest.raises(ToolkitError) as err:
        lifecycle.preflight(r)
    assert str(err.value) == ("`docker compose` (the Compose v2 CLI plugin) is not available "
                              "(docker: unknown command: docker compose); start Docker with the compose plugin (or, "
                              "for this repository's test lab, run `inv lab.up`: it installs the engine and links the "
                              "compose plugin)")


def test_no_engine_is_one_line_naming_the_lab():
    r = runner({VERSION: Result("2.40.3\n"), ENGINE: Result(
        stderr="Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n",
        exited=1)})
    with pytest.raises(EngineUnavailable) as err:
        lifecycle.preflight(r)
    assert str(err.value) == ("no Docker engine answers (Cannot connect to the Docker daemon at "
                              "unix:///var/run/docker.sock. Is the docker daemon running?); start Docker with the "
                              "compose plugin (or, for this repository's test lab, run `inv lab.up`: it installs the "
                              "engine and links the compose plugin)")
    assert "\n" not in str(err.value)


# ---- port ---------------------------------------------------------------------------------------------------

def test_port_taken_names_port_and_variable():
    with pytest.raises(PortInUse) as err:
        lifecycle.check_port(S, [], in_use=lambda port: port == 8000)
    assert re.fullmatch(r"port 8000 on 127\.0\.0\.1 is already in use; stop what listens there, or set APP_PORT "
                        r"to a free port in \.env or the environment \(e\.g\. APP_PORT=\d+\)", str(err.value))


def test_port_held_by_our_own_app_is_fine():
    ours = compose.parse_ps(ps_rows(("app", "running", "healthy", 0, (8000,))))
    lifecycle.check_port(S, ours, in_use=lambda port: True)


def test_port_held_by_our_stopped_app_is_not_ours():
    stopped = compose.parse_ps(ps_rows(("app", "exited", "", 0, ())))
    with pytest.raises(PortInUse):
        lifecycle.check_port(S, stopped, in_use=lambda port: True)


def test_real_bind_test_sees_a_listener():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert lifecycle.port_in_use(port) is True
    assert lifecycle.port_in_use(lifecycle.free_port()) is False


def test_missing_postgres_image_names_the_fix():
    r = runner({shlex.join(compose.image_id_argv("postgres:17-trixie")): Result(exited=1)})
    with pytest.raises(ToolkitError) as err:
        lifecycle.check_postgres_image(r, S)
    assert str(err.value) == ("the Postgres image postgres:17-trixie is not on this engine and cannot be pulled "
                              "here; load it or set POSTGRES_IMAGE to an image you have (or, for this repository's "
                              "test lab, run `inv lab.up`: it builds the stand-in)")


# ---- health wait --------------------------------------------------------------------------------------------

class FakeClock(Clock):
    def __init__(self):
        self.t = 0.0
        super().__init__(now=lambda: self.t, sleep=self._sleep)

    def _sleep(self, seconds):
        self.t += seconds


def test_wait_returns_once_the_health_endpoint_answers():
    answers = iter([False, False, True])
    urls = []

    def probe(url):
        urls.append(url)
        return next(answers)

    clock = FakeClock()
    lifecycle.wait_healthy(runner({}), S, deadline=60, probe=probe, clock=clock)
    assert urls == ["http://127.0.0.1:8000/health/?ready=1"] * 3
    assert clock.t == 0.5


def test_wait_gives_up_at_the_deadline_with_app_logs():
    r = runner({PS: Result(ps_rows(("db", "running", "healthy", 0, ()), ("app", "running", "starting", 0, (8000,)))),
                logs_cmd("app"): Result("app-1  | booting\napp-1  | still booting\n")})
    clock = FakeClock()
    with pytest.raises(StackUnhealthy) as err:
        lifecycle.wait_healthy(r, S, deadline=5, probe=lambda url: False, clock=clock)
    assert str(err.value) == ("service app is not healthy: http://127.0.0.1:8000/health/?ready=1 did not answer 200 "
                              "in time. Last log lines of app:\napp-1  | booting\napp-1  | still booting\n"
                              "(see all with: inv logs app)")
    assert clock.t == 5


def test_wait_fails_early_when_a_container_dies():
    r = runner({PS: Result(ps_rows(("db", "running", "healthy", 0, ()), ("app", "exited", "", 1, ()))),
                logs_cmd("app"): Result("app-1  | DJANGO_SECRET_KEY is too weak\n")})
    clock = FakeClock()
    with pytest.raises(StackUnhealthy) as err:
        lifecycle.wait_healthy(r, S, deadline=120, probe=lambda url: False, clock=clock)
    assert str(err.value).splitlines()[:2] == [
        "service app is not healthy: its container exited with code 1. Last log lines of app:",
        "app-1  | DJANGO_SECRET_KEY is too weak"]
    assert clock.t < 3


def test_compose_up_failing_on_the_database_names_db_and_shows_its_logs():
    up = shlex.join(compose.up_argv(S, "djapp:abc"))
    r = runner({up: Result(stderr="dependency failed to start: container djapp-db-1 is unhealthy\n", exited=1),
                PS: Result(ps_rows(("db", "running", "unhealthy", 0, ()), ("app", "created", "", 0, ()))),
                logs_cmd("db"): Result("db-1  | FATAL:  could not open file \"global/pg_filenode.map\"\n")})
    with pytest.raises(StackUnhealthy) as err:
        lifecycle.start(r, S, "djapp:abc", timeout=30, clock=FakeClock())
    assert str(err.value) == (
        "service db is not healthy: `docker compose up` failed: dependency failed to start: container djapp-db-1 "
        "is unhealthy. Last log lines of db:\ndb-1  | FATAL:  could not open file \"global/pg_filenode.map\"\n"
        "(see all with: inv logs db)")


def test_compose_up_timing_out_blames_the_unhealthy_service():
    from invoke.exceptions import CommandTimedOut

    up = shlex.join(compose.up_argv(S, "djapp:abc"))
    ctx = MockContext(run={PS: Result(ps_rows(("db", "running", "starting", 0, ()))),
                           logs_cmd("db"): Result("db-1  | waiting\n")})
    real_run = ctx.run

    def run(command, **kw):
        if command == up:
            assert kw["timeout"] == 7
            raise CommandTimedOut(Result(command=command), timeout=7)
        return real_run(command, **kw)

    ctx.run = run
    r = Runner(ctx=ctx, out=io.StringIO())
    with pytest.raises(StackUnhealthy) as err:
        lifecycle.start(r, S, "djapp:abc", timeout=7, clock=FakeClock())
    assert str(err.value).splitlines()[0] == ("service db is not healthy: the stack did not start within 7s. "
                                              "Last log lines of db:")


def test_failure_report_redacts_the_password():
    r = runner({PS: Result(ps_rows(("db", "exited", "", 1, ()))),
                logs_cmd("db"): Result("db-1  | password djapp-dev-only-password rejected\n")})
    err = lifecycle.unhealthy(r, S, "it broke")
    assert "djapp-dev-only-password" not in str(err)
    assert f"password {REDACTED} rejected" in str(err)


# ---- image decision ---------------------------------------------------------------------------------------

REF = "djapp:abc1234-dirty"


@pytest.mark.parametrize("image_id,dirty,recorded,reason", [
    (None, False, None, "no image djapp:abc1234-dirty yet"),
    ("sha256:1", False, None, None),
    ("sha256:1", True, {"context": "h1", "id": "sha256:1"}, None),
    ("sha256:1", True, None, "the build context changed since djapp:abc1234-dirty was built (the tree has "
                             "uncommitted changes)"),
    ("sha256:1", True, {"context": "h0", "id": "sha256:1"}, "the build context changed since djapp:abc1234-dirty "
                                                           "was built (the tree has uncommitted changes)"),
    ("sha256:2", True, {"context": "h1", "id": "sha256:1"}, "djapp:abc1234-dirty was rebuilt from another tree since"),
])
def test_build_reason(image_id, dirty, recorded, reason):
    assert image_pin.build_reason(REF, image_id, dirty, "h1", recorded) == reason


def test_context_hash_sees_content_and_exec_bit(tmp_path):
    (tmp_path / "a").write_text("1")
    h1 = image_pin.context_hash(tmp_path, ["a"])
    (tmp_path / "a").chmod(0o755)
    h2 = image_pin.context_hash(tmp_path, ["a"])
    (tmp_path / "a").write_text("2")
    h3 = image_pin.context_hash(tmp_path, ["a"])
    assert len({h1, h2, h3}) == 3


class Built:
    def __init__(self, ref, id):
        self.ref, self.id = ref, id


def _ensure(tmp_path, tag, image_out, builds):
    (tmp_path / "f").write_text("x")
    s = StackSettings.from_values(dict(localenv.DEFAULTS), root=compose.ROOT, environ={})
    r = runner({shlex.join(compose.image_id_argv(f"djapp:{tag}")): image_out})
    said = []

    def build(tag):
        builds.append(tag)
        return Built(f"djapp:{tag}", "sha256:new")

    ref = image_pin.ensure(r, s, tag, build=build, files=["docker-compose.yml"],
                               state_path=tmp_path / "state.json", say=said.append)
    return ref, said


def test_clean_tree_with_its_image_does_not_build(tmp_path):
    builds = []
    ref, said = _ensure(tmp_path, "abc1234", Result("sha256:old\n"), builds)
    assert (ref, builds, said) == ("djapp:abc1234", [], ["image: djapp:abc1234 (up to date)"])


def test_missing_image_is_built(tmp_path):
    builds = []
    ref, said = _ensure(tmp_path, "abc1234", Result(exited=1), builds)
    assert (ref, builds, said) == ("djapp:abc1234", ["abc1234"], ["image: building djapp:abc1234: no image djapp:abc1234 yet"])


def test_dirty_tree_builds_once_then_reuses_until_the_context_changes(tmp_path):
    builds = []
    ref, said = _ensure(tmp_path, "abc1234-dirty", Result("sha256:old\n"), builds)
    assert builds == ["abc1234-dirty"] and said[0].startswith("image: building djapp:abc1234-dirty: the build context")
    state = json.loads((tmp_path / "state.json").read_text())
    assert list(state.values()) == [{"context": image_pin.context_hash(compose.ROOT, ["docker-compose.yml"]),
                                     "id": "sha256:new"}]
    ref, said = _ensure(tmp_path, "abc1234-dirty", Result("sha256:new\n"), builds)
    assert builds == ["abc1234-dirty"] and said == ["image: djapp:abc1234-dirty (up to date)"]


def test_state_file_follows_xdg_cache_home(tmp_path):
    assert image_pin.state_file({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "djdeploy" / "stack-images.json"


def test_pinned_tag_runs_an_existing_image_only():
    r = runner({shlex.join(compose.image_id_argv("djapp:v1")): Result("sha256:1\n"),
                shlex.join(compose.image_id_argv("djapp:v2")): Result(exited=1)})
    assert image_pin.pinned(r, S, "v1") == "djapp:v1"
    with pytest.raises(ToolkitError) as err:
        image_pin.pinned(r, S, "v2")
    assert str(err.value) == ("image djapp:v2 is not on this engine; build it with `inv build`, or drop --tag to "
                              "build the current tree")
    with pytest.raises(ToolkitError) as err:
        image_pin.pinned(r, S, "a b")
    assert str(err.value) == "--tag 'a b' is not a valid image tag; give e.g. abc1234 or latest"


def test_state_keeps_only_recent_entries(tmp_path):
    path = tmp_path / "s.json"
    image_pin.write_state(path, {f"k{i}": {"context": "c", "id": str(i)} for i in range(60)}, keep=50)
    state = image_pin.read_state(path)
    assert list(state) == [f"k{i}" for i in range(10, 60)]
    path.write_text("{not json")
    assert image_pin.read_state(path) == {}
