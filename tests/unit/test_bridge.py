"""deploy.image.bridge: which previous releases an image carries, the bridging build's Dockerfile, the gathering
script (run here on directories), and apply() against fake engine/manager objects."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
from invoke import Result

from deploy.image import bridge
from deploy.ship import swarm

D = {n: "sha256:" + n * 64 for n in "abcdef"}


def row(tag, digest, result="ok", action="deploy"):
    return swarm.audit_line(when="T", who="me", action=action, env="lab", git="g",
                            image=f"127.0.0.1:5000/djapp:{tag}", digest=digest, result=result)


def rows(*lines):
    return swarm.parse_audit("".join(lines))


def test_previous_releases_are_the_last_distinct_successful_ones_newest_first_without_the_current():
    audit = rows(row("v1", D["a"]), row("v2", D["b"]), row("v3", D["c"], result="failed"), row("v4", D["d"]),
                 row("v2", D["e"], action="rollback"), row("v5", D["f"]))
    assert bridge.previous_releases(audit, 2, "v6") == [("v5", D["f"]), ("v2", D["e"])]   # the rollback's digest
    assert bridge.previous_releases(audit, 3, "v5") == [("v2", D["e"]), ("v4", D["d"]), ("v1", D["a"])]
    assert bridge.previous_releases(audit, 5, "v0") == [("v5", D["f"]), ("v2", D["e"]), ("v4", D["d"]), ("v1", D["a"])]
    assert bridge.previous_releases([], 2, "v1") == []
    assert bridge.previous_releases(rows(row("v1", "-")), 2, "v2") == []   # no digest recorded: nothing to pin


def test_dockerfile_gathers_from_each_pinned_image_and_adds_one_layer():
    text = bridge.dockerfile("djapp:v3", ["reg/djapp@" + D["b"], "reg/djapp@" + D["a"]], ["v2", "v1"])
    lines = text.splitlines()
    assert lines[0] == "FROM djapp:v3 AS djdeploy-new"
    assert lines[1:3] == [f"COPY --from=reg/djapp@{D['b']} /app/staticfiles/ /tmp/djdeploy-bridge/previous-1/",
                          f"COPY --from=reg/djapp@{D['a']} /app/staticfiles/ /tmp/djdeploy-bridge/previous-2/"]
    argv = json.loads(lines[3].removeprefix("RUN "))
    assert argv[:2] == ["python3", "-c"] and argv[3:] == [
        "/app/staticfiles", "/tmp/djdeploy-bridged", "/tmp/djdeploy-bridge/previous-1", "/tmp/djdeploy-bridge/previous-2"]
    assert lines[4:] == ["FROM djapp:v3", "COPY --from=djdeploy-new /tmp/djdeploy-bridged/ /app/staticfiles/",
                         'LABEL org.djdeploy.bridged="v2 v1"']
    tar = __import__("tarfile").open(fileobj=bridge.context(text))
    assert tar.getnames() == ["Dockerfile"] and tar.extractfile("Dockerfile").read().decode() == text


def release_dir(path, files: dict, manifest=True):
    for name, body in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(body)
    if manifest:
        paths = {n.replace(n.split(".")[-2] + ".", ""): n for n in files if n.count(".") == 2}
        (path / "staticfiles.json").write_text(json.dumps({"paths": paths, "version": "1.1"}))
    return path


def test_gather_script_copies_only_the_own_hashed_files_the_new_release_lacks(tmp_path):
    new = release_dir(tmp_path / "new", {"notes/app.333333333333.css": "v3", "notes/app.css": "v3",
                                         "admin/base.000000000000.css": "same"})
    p1 = release_dir(tmp_path / "p1", {"notes/app.222222222222.css": "v2", "notes/app.css": "v2",
                                       "admin/base.000000000000.css": "same", "notes/app.111111111111.css": "bridged"})
    (p1 / "staticfiles.json").write_text(json.dumps({"paths": {"notes/app.css": "notes/app.222222222222.css",
                                                               "admin/base.css": "admin/base.000000000000.css",
                                                               "x.css": "../../etc/passwd"}}))
    p2 = release_dir(tmp_path / "p2", {"notes/app.111111111111.css": "v1", "admin/base.222222222222.css": "other",
                                       "notes/app.222222222222.css": "p2"})
    (p2 / "staticfiles.json").write_text(json.dumps({"paths": {"notes/app.css": "notes/app.111111111111.css",
                                                               "admin/base.css": "notes/app.222222222222.css"}}))
    bare = release_dir(tmp_path / "bare", {"notes/app.444444444444.css": "x"}, manifest=False)
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-c", bridge.GATHER_SCRIPT, str(new), str(out), str(p1), str(p2), str(bare)],
                         capture_output=True, text=True, check=True)
    assert res.stdout == "bridged 2 hashed static files\n"
    got = {p.relative_to(out).as_posix(): p.read_text() for p in out.rglob("*") if p.is_file()}
    # p1's own (its manifest: not the file it carried from p2), then p2's own not already taken; no unhashed name,
    # nothing the new release has, nothing outside the directory, nothing from an image without a manifest
    assert got == {"notes/app.222222222222.css": "v2", "notes/app.111111111111.css": "v1"}


def test_gather_script_makes_an_empty_layer_when_nothing_is_missing(tmp_path):
    new = release_dir(tmp_path / "new", {"a.000000000000.css": "x"})
    res = subprocess.run([sys.executable, "-c", bridge.GATHER_SCRIPT, str(new), str(tmp_path / "out"), str(new)],
                         capture_output=True, text=True, check=True)
    assert res.stdout == "bridged 0 hashed static files\n" and (tmp_path / "out").is_dir()


class Manager:
    def __init__(self, audit=""):
        self.audit, self.calls = audit, []

    def run(self, argv, **kw):
        self.calls.append(argv)
        return Result(stdout=self.audit, exited=0)


def cfg(**over):
    return SimpleNamespace(**{"static_releases": 2, "command_timeout": 30, "repository": "reg/djapp", "env": "lab",
                              "registry_user": "u", "registry_password": "p", "remote_dir": "/r", **over})


def test_apply_without_previous_releases_or_with_bridging_off_touches_no_engine(monkeypatch):
    from deploy.core import engine

    monkeypatch.setattr(engine, "client", lambda **kw: pytest.fail("no engine needed"))
    monkeypatch.setattr(swarm, "audit_show_cmd", lambda c, n: ["tail", "-n", str(n), "audit.log"])
    assert bridge.apply(cfg(static_releases=0), Manager(), "djapp:v1", "v1") == "no bridging (STATIC_RELEASES=0)"
    manager = Manager()
    assert bridge.apply(cfg(), manager, "djapp:v1", "v1") == "no previous release to bridge"
    assert manager.calls == [["tail", "-n", "1000", "audit.log"]]


class FakeCli:
    def __init__(self, local=(), pullable=()):
        from docker.errors import APIError, ImageNotFound

        self.local, self.pullable, self.built, self.tagged, self.removed = set(local), set(pullable), [], [], []
        cli = self

        class Images:
            def get(self, ref):
                if ref not in cli.local and not ref.startswith("sha256:"):
                    raise ImageNotFound(ref)
                return SimpleNamespace(tag=lambda repo, tag: cli.tagged.append(f"{repo}:{tag}"))

            def remove(self, ref):
                cli.removed.append(ref)

        class Api:
            def pull(self, repo, tag, auth_config):
                assert auth_config == {"username": "u", "password": "p"}
                if f"{repo}@{tag}" not in cli.pullable:
                    raise APIError("manifest unknown", explanation="manifest unknown")
                cli.local.add(f"{repo}@{tag}")

            def build(self, fileobj, **kw):
                cli.built.append(__import__("tarfile").open(fileobj=fileobj).extractfile("Dockerfile").read().decode())
                return iter([{"stream": "Step 1/6 : FROM x\n"}, {"stream": "bridged 3 hashed static files\n"},
                             {"aux": {"ID": "sha256:new"}}])

        self.images, self.api = Images(), Api()

    def close(self):
        pass


def test_apply_pulls_a_missing_previous_image_skips_a_gone_one_and_builds_once(monkeypatch):
    from deploy.core import engine

    fake = FakeCli(local={"reg/djapp@" + D["b"]}, pullable={"reg/djapp@" + D["a"]})
    monkeypatch.setattr(engine, "client", lambda **kw: fake)
    audit = row("v0", D["c"]) + row("v1", D["a"]) + row("v2", D["b"])
    out = io.StringIO()
    note = bridge.apply(cfg(static_releases=3), Manager(audit), "djapp:v3", "v3", out=out)
    assert note == "+3 hashed static files of v2 v1"
    assert out.getvalue() == (f"warning: previous release reg/djapp@{D['c']} is not in the registry (manifest unknown); "
                              "its static files are not bridged\n")
    assert fake.built[0] == bridge.dockerfile("djapp:v3", ["reg/djapp@" + D["b"], "reg/djapp@" + D["a"]], ["v2", "v1"])
    assert fake.tagged == ["djapp:latest"] and fake.removed == ["reg/djapp@" + D["a"]]   # only what it pulled


def test_apply_for_a_rollback_builds_from_the_pinned_tag_and_leaves_latest_alone(monkeypatch):
    from deploy.core import engine

    fake = FakeCli(local={"reg/djapp@" + D["b"], "reg/djapp@" + D["a"]})
    monkeypatch.setattr(engine, "client", lambda **kw: fake)
    audit = row("v1", D["a"]) + row("v2", D["b"])
    note = bridge.apply(cfg(), Manager(audit), "djapp:v1-static", "v1", base="reg/djapp@" + D["a"])
    assert note == "+3 hashed static files of v2"
    assert fake.built[0].splitlines()[0] == f"FROM reg/djapp@{D['a']} AS djdeploy-new"
    assert fake.tagged == [] and fake.removed == []


def test_a_failed_bridging_build_is_one_line_naming_the_way_out(monkeypatch):
    from deploy.core import engine
    from deploy.core.errors import ToolkitError

    fake = FakeCli(local={"reg/djapp@" + D["a"]})
    fake.api.build = lambda fileobj, **kw: iter([{"error": "COPY failed: no such file\n"}])
    monkeypatch.setattr(engine, "client", lambda **kw: fake)
    with pytest.raises(ToolkitError) as exc:
        bridge.apply(cfg(), Manager(row("v1", D["a"])), "djapp:v2", "v2")
    assert str(exc.value) == ("static bridging of djapp:v2 failed: COPY failed: no such file; deploy again (or set "
                              "STATIC_RELEASES=0 to ship without the previous releases' static files)")


def test_static_releases_defaults_to_two_and_is_validated(tmp_path):
    from deploy.ship import config
    from deploy.core.errors import ConfigError
    from test_config_deploy import write

    write(tmp_path)
    assert config.load("prod", env_dir=tmp_path, environ={}).static_releases == 2
    assert config.load("prod", env_dir=tmp_path, environ={"DJDEPLOY_STATIC_RELEASES": "0"}).static_releases == 0
    with pytest.raises(ConfigError) as err:
        config.load("prod", env_dir=tmp_path, environ={"DJDEPLOY_STATIC_RELEASES": "many"})
    assert err.value.problems == ["environment DJDEPLOY_STATIC_RELEASES: STATIC_RELEASES must be a whole number "
                                  "from 0 to 20 (got 'many')"]
