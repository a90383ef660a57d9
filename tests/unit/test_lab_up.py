"""`lab.up` checks everything before any side effect; `lab.down` needs --yes. No engine, no processes."""

from __future__ import annotations

import pytest
from invoke import Context, MockContext

from deploy.core.errors import ToolkitError
from deploy.lab import host, paths, procs, provision, registry, sshd
from deploy.core.runner import Runner


@pytest.fixture
def no_engine(monkeypatch, tmp_path):
    monkeypatch.setattr(provision, "_client", lambda: None)
    monkeypatch.setattr(paths, "LAB_DIR", tmp_path / "lab")
    monkeypatch.setattr(paths, "STATE_FILE", tmp_path / "lab" / "state.json")
    return tmp_path / "lab"


def test_not_root_without_engine_stops_with_one_line_and_does_nothing(no_engine, monkeypatch):
    monkeypatch.setattr(host, "host_facts", lambda: host.HostFacts(False, ("debian",), frozenset()))
    runner = Runner(ctx=MockContext(), echo=False)
    with pytest.raises(ToolkitError) as err:
        provision.up(runner, say=lambda m: None)
    assert "\n" not in str(err.value)
    assert str(err.value).startswith("no Docker engine answers and the lab cannot install one (not running as root)")
    assert "docker.io" in str(err.value) and "debootstrap" in str(err.value)
    assert runner.history == [] and not no_engine.exists()


def test_not_debian_without_engine(no_engine, monkeypatch):
    monkeypatch.setattr(host, "host_facts", lambda: host.HostFacts(True, ("arch",), frozenset()))
    with pytest.raises(ToolkitError, match=r"\(this is not Debian/Ubuntu\); install Docker Engine"):
        provision.up(Runner(ctx=MockContext(), echo=False), say=lambda m: None)
    assert not no_engine.exists()


def test_not_root_with_dockerd_installed_but_stopped(no_engine, monkeypatch):
    monkeypatch.setattr(host, "host_facts", lambda: host.HostFacts(False, ("debian",), frozenset(host.PACKAGES)))
    with pytest.raises(ToolkitError) as err:
        provision.up(Runner(ctx=MockContext(), echo=False), say=lambda m: None)
    assert str(err.value) == ("no Docker engine answers and starting dockerd needs root; start Docker, "
                              "or run `inv lab.up` as root")


@pytest.mark.parametrize("taken,env", [(paths.REGISTRY_PORT, "DJDEPLOY_LAB_REGISTRY_PORT"),
                                       (paths.SSH_PORT, "DJDEPLOY_LAB_SSH_PORT")])
def test_port_taken_is_checked_before_installing_anything(no_engine, monkeypatch, taken, env):
    monkeypatch.setattr(host, "host_facts", lambda: host.HostFacts(True, ("debian",), frozenset()))
    monkeypatch.setattr(procs, "port_answers", lambda h, port, timeout=0.5: port == taken)
    monkeypatch.setattr(procs, "port_owner", lambda port: "squatter (pid 7)")
    monkeypatch.setattr(registry, "pid", lambda: None)
    monkeypatch.setattr(sshd, "pid", lambda: None)
    runner = Runner(ctx=MockContext(), echo=False)
    with pytest.raises(ToolkitError) as err:
        provision.up(runner, say=lambda m: None)
    assert str(err.value).startswith(f"port {taken} on 127.0.0.1 is taken by squatter (pid 7), so the lab ")
    assert str(err.value).endswith(f"stop that process or set {env} to a free port")
    assert runner.history == [] and not no_engine.exists()


def test_base_override_must_be_buildable(no_engine, monkeypatch):
    monkeypatch.setenv("DJDEPLOY_LAB_BASE_IMAGES", "ubuntu:24.04")
    with pytest.raises(ToolkitError) as err:
        provision.up(Runner(ctx=MockContext(), echo=False), say=lambda m: None)
    assert str(err.value) == "cannot build base image ubuntu:24.04: only debian:<12|13>[.x]-slim names are supported"


def test_base_images_default_to_the_dockerfile_from_lines(monkeypatch):
    monkeypatch.delenv("DJDEPLOY_LAB_BASE_IMAGES", raising=False)
    assert provision.base_images() == ["debian:13.7-slim"]
    monkeypatch.setenv("DJDEPLOY_LAB_BASE_IMAGES", "tmp/debian:13.7-slim, debian:13-slim")
    assert provision.base_images() == ["tmp/debian:13.7-slim", "debian:13-slim"]


def test_down_needs_yes():
    from deploy.tasks import lab

    from invoke import Exit

    with pytest.raises(Exit) as err:
        lab.down(Context())
    assert err.value.message == (f"error: lab.down removes the lab at {paths.LAB_DIR} and what it started; "
                                 "pass --yes to confirm")


def test_down_refuses_home(monkeypatch):
    monkeypatch.setattr(paths, "LAB_DIR", paths.Path.home())
    with pytest.raises(ToolkitError, match="refusing to remove"):
        provision.down(Runner(ctx=MockContext(), echo=False), say=lambda m: None)


def test_lab_up_refuses_fewer_than_one_node_before_doing_anything(monkeypatch):
    from invoke import Context, Exit

    import tasks
    from deploy.lab import provision

    monkeypatch.setattr(provision, "up", lambda *a, **k: (_ for _ in ()).throw(AssertionError("provisioned")))
    with pytest.raises(Exit, match=r"--nodes must be 1 or more \(got 0\)"):
        tasks.ns.collections["lab"]["up"](Context(), nodes=0)
