"""Unit tests for the lab's pure parts: parsing, plans, exact commands, every error text. No engine."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from deploy.core.errors import ToolkitError
from deploy.lab import baseimage, host, paths, procs, registry, sshd, standins, state
from deploy.core.runner import Runner


# --- FROM lines and compose defaults ---------------------------------------------------------------

def test_from_lines_multi_stage_skip_stage_names_and_scratch():
    text = """
# a comment FROM nothing
ARG BASE=debian:13.7-slim
FROM ${BASE} AS builder
RUN echo hi
FROM --platform=linux/amd64 debian:13.7-slim AS final
COPY --from=builder /x /x
FROM builder AS again
FROM scratch
from python:3.13-slim
"""
    assert standins.parse_from_lines(text) == ["debian:13.7-slim", "python:3.13-slim"]


def test_from_lines_without_arg_value_is_skipped():
    assert standins.parse_from_lines("ARG X\nFROM $X\nFROM debian:12-slim\n") == ["debian:12-slim"]


def test_compose_defaults():
    text = """services:
  db:
    image: ${POSTGRES_IMAGE:-postgres:17-trixie}
  app:
    image: "${APP_IMAGE_REF:-djapp:latest}"   # built by inv build
  proxy:
    image: haproxy:3.0-trixie
  other:
    image: ${NO_DEFAULT}
"""
    assert standins.compose_image_defaults(text) == ["postgres:17-trixie", "djapp:latest", "haproxy:3.0-trixie"]


def test_project_images_reads_dockerfile_and_compose(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM debian:13.7-slim AS b\nFROM debian:13.7-slim\n")
    (tmp_path / "docker-compose.yml").write_text("services:\n  db:\n    image: ${P:-postgres:17-trixie}\n")
    assert standins.project_images(tmp_path) == ["debian:13.7-slim", "postgres:17-trixie"]


def test_project_images_of_the_repository_name_the_base():
    assert standins.project_images()[0] == "debian:13.7-slim"


# --- stand-in recipes -----------------------------------------------------------------------------

def _recipe(tmp_path, name="postgres:17-trixie"):
    d = tmp_path / "images" / "pg"
    d.mkdir(parents=True)
    (d / "IMAGE").write_text(name + "\n")
    (d / "Dockerfile").write_text("FROM debian:13.7-slim\n")
    (d / "entry.sh").write_text("#!/bin/sh\n")
    return d


def test_dir_hash_follows_content_and_exec_bit(tmp_path):
    d = _recipe(tmp_path)
    first = standins.dir_hash(d)
    assert standins.dir_hash(d) == first
    os.chmod(d / "entry.sh", 0o755)
    second = standins.dir_hash(d)
    assert second != first
    (d / "Dockerfile").write_text("FROM debian:13.7-slim\nRUN true\n")
    assert standins.dir_hash(d) not in (first, second)


def test_stand_ins_listing_and_errors(tmp_path):
    d = _recipe(tmp_path)
    [item] = standins.stand_ins(tmp_path / "images")
    assert (item.name, item.directory, item.hash) == ("postgres:17-trixie", d, standins.dir_hash(d))
    (d / "IMAGE").write_text("two names\n")
    with pytest.raises(ToolkitError) as err:
        standins.stand_ins(tmp_path / "images")
    assert str(err.value) == f"{d / 'IMAGE'}: must hold one image name on one line (e.g. postgres:17-trixie)"
    (d / "IMAGE").unlink()
    with pytest.raises(ToolkitError) as err:
        standins.stand_ins(tmp_path / "images")
    assert str(err.value) == f"stand-in recipe {d} needs both IMAGE and Dockerfile; add the missing file"


def test_repository_stand_ins_include_postgres():
    names = {s.name for s in standins.stand_ins()}
    assert "postgres:17-trixie" in names
    for item in standins.stand_ins():
        assert (item.directory / "Dockerfile").read_text().count("FROM debian:13.7-slim") >= 1


def test_needs_build():
    assert standins.needs_build(None, "abc")
    assert standins.needs_build({}, "abc")
    assert standins.needs_build({paths.HASH_LABEL: "old"}, "abc")
    assert not standins.needs_build({paths.HASH_LABEL: "abc"}, "abc")


# --- the Debian base ------------------------------------------------------------------------------

@pytest.mark.parametrize("name,suite", [
    ("debian:13.7-slim", "trixie"), ("debian:13-slim", "trixie"), ("debian:trixie-slim", "trixie"),
    ("debian:12.11-slim", "bookworm"), ("docker.io/library/debian:13.7-slim", "trixie"),
    ("djdeploy-bench/debian:13.7-slim", "trixie"), ("debian-ish:13", None),
    ("debian:11-slim", None), ("ubuntu:24.04", None), ("postgres:17-trixie", None)])
def test_suite_for(name, suite):
    assert baseimage.suite_for(name) == suite


def test_slimming_rules_match_the_official_slim_images():
    files = baseimage.config_files()
    excludes = files["etc/dpkg/dpkg.cfg.d/docker-slim"].splitlines()
    for path in ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*"):
        assert f"path-exclude {path}" in excludes
    assert not any(line.startswith("path-include") for line in excludes)  # nothing under /usr/share/doc
    clean = files["etc/apt/apt.conf.d/docker-clean"]
    assert clean.count("rm -f /var/cache/apt/archives/*.deb") == 2  # after dpkg runs and after apt update
    assert 'Dir::Cache::pkgcache "";' in clean
    assert files["etc/apt/apt.conf.d/docker-no-languages"] == 'Acquire::Languages "none";\n'
    assert files["etc/apt/apt.conf.d/docker-no-recommends"] == 'APT::Install-Recommends "false";\n'


def test_removal_and_import_commands():
    root = Path("/r")
    argvs = baseimage.removal_argvs(root)
    assert ["find", "/r/var/cache/apt", "-mindepth", "1", "-delete"] in argvs
    assert ["find", "/r/var/lib/apt/lists", "-mindepth", "1", "-delete"] in argvs
    assert ["find", "/r/usr/share/doc", "-mindepth", "1", "-delete"] in argvs
    assert ["find", "/r/var/log", "-mindepth", "1", "-maxdepth", "1", "-name", "*.log", "-delete"] in argvs
    assert baseimage.debootstrap_argv("trixie", Path("/r"), "http://m/debian") == [
        "debootstrap", "--variant=minbase", "trixie", "/r", "http://m/debian"]
    assert baseimage.import_argv(Path("/t.tar"), "debian:13.7-slim", {"b": "x y", "a": "1"}) == [
        "docker", "import", "--change", 'CMD ["bash"]',
        "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--change", 'LABEL a="1"', "--change", 'LABEL b="x y"', "/t.tar", "debian:13.7-slim"]


def test_recipe_hash_is_stable_and_depends_on_suite():
    assert baseimage.recipe_hash("trixie") == baseimage.recipe_hash("trixie")
    assert baseimage.recipe_hash("trixie") != baseimage.recipe_hash("bookworm")


def test_base_build_rejects_other_names():
    with pytest.raises(ToolkitError) as err:
        baseimage.build(Runner(dry_run=True, echo=False), ["ubuntu:24.04"], "lab")
    assert str(err.value) == "cannot build base image(s) ubuntu:24.04: only debian:<12|13>[.x]-slim names"


# --- host packages --------------------------------------------------------------------------------

def test_os_ids():
    assert host.os_ids('PRETTY_NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\n') == ("ubuntu", "debian")
    assert host.os_ids('ID="fedora"\n') == ("fedora",)


def test_what_to_install_given_what_is_present():
    none = host.HostFacts(is_root=True, os_ids=("debian",), commands=frozenset())
    needed = host.needed_commands(engine_answers=False, base_needs_build=True)
    assert host.missing_packages(none, needed) == [
        "docker.io", "docker-registry", "openssh-server", "openssh-client", "apache2-utils", "debootstrap"]
    some = host.HostFacts(True, ("debian",), frozenset({"sshd", "ssh-keygen", "docker-registry", "htpasswd"}))
    assert host.missing_packages(some, host.needed_commands(True, False)) == []
    assert host.missing_packages(some, host.needed_commands(True, True)) == ["debootstrap"]
    assert host.missing_packages(some, host.needed_commands(False, False)) == ["docker.io"]


def test_install_problem_messages():
    root_debian = host.HostFacts(True, ("debian",))
    assert host.install_problem(root_debian, ["docker.io"], engine_answers=False) is None
    assert host.install_problem(host.HostFacts(False, ("debian",)), [], engine_answers=True) is None
    assert host.install_problem(host.HostFacts(False, ("debian",)), ["docker.io", "debootstrap"], False) == (
        "no Docker engine answers and the lab cannot install one (not running as root); install Docker Engine "
        "(https://docs.docker.com/engine/install/) and start it, or as root on Debian/Ubuntu run `inv lab.up` "
        "again (it installs: docker.io debootstrap)")
    assert host.install_problem(host.HostFacts(True, ("fedora",)), ["apache2-utils"], True) == (
        "the lab needs apache2-utils and cannot install it (this is not Debian/Ubuntu); install it "
        "(Debian/Ubuntu: apt-get install -y apache2-utils)")


def test_install_commands():
    assert host.install_argvs(["docker.io", "debootstrap"]) == [
        ["apt-get", "update", "-q"],
        ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "--no-install-recommends",
         "docker.io", "debootstrap"]]


# --- daemons, registry, sshd ----------------------------------------------------------------------

def test_daemon_commands():
    assert procs.start_daemon_argv("/usr/bin/x", ["serve", "c.yml"], Path("/p.pid"), Path("/x.log")) == [
        "start-stop-daemon", "--start", "--background", "--make-pidfile", "--pidfile", "/p.pid",
        "--output", "/x.log", "--exec", "/usr/bin/x", "--", "serve", "c.yml"]


def test_stop_terms_a_daemon_and_treats_a_zombie_as_stopped(tmp_path):
    import subprocess

    from invoke import Context

    runner = Runner(ctx=Context(), echo=False)
    child = subprocess.Popen(["sleep", "60"])  # our child: once dead it stays a zombie until we reap it
    pidfile = tmp_path / "sleep.pid"
    pidfile.write_text(f"{child.pid}\n")
    assert procs.daemon_pid(pidfile, "sleep") == child.pid
    procs.stop(runner, pidfile, "sleep", grace=5)
    assert not procs.pid_alive(child.pid) and not pidfile.exists()
    assert child.poll() is not None or child.wait(5) is not None  # it really was a zombie until now
    procs.stop(runner, pidfile, "sleep")  # already gone: fine
    assert [cmd for _, cmd in runner.history] == [f"kill -TERM {child.pid}", f"rm -f {pidfile}", f"rm -f {pidfile}"]


def test_port_taken_error_names_port_owner_and_fix(monkeypatch):
    monkeypatch.setattr(procs, "port_owner", lambda port: "nginx (pid 42)")
    err = procs.port_taken_error(5000, "registry (127.0.0.1:5000)", "DJDEPLOY_LAB_REGISTRY_PORT")
    assert str(err) == ("port 5000 on 127.0.0.1 is taken by nginx (pid 42), so the lab registry (127.0.0.1:5000) "
                        "cannot listen there; stop that process or set DJDEPLOY_LAB_REGISTRY_PORT to a free port")
    monkeypatch.setattr(procs, "port_owner", lambda port: "")
    assert "taken by another process, so the lab SSH" in str(procs.port_taken_error(2222, "SSH", "X"))


def test_port_owner_finds_a_listener_of_this_process():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert procs.port_owner(sock.getsockname()[1]).endswith(f"(pid {os.getpid()})")


def test_wait_for_names_what_timed_out():
    with pytest.raises(ToolkitError) as err:
        procs.wait_for(lambda: False, 0.05, "the thing", interval=0.01, detail=lambda: "log line")
    assert str(err.value) == "timed out after 0.05s waiting for the thing\nlog line"


def test_registry_config_and_htpasswd_keep_the_password_out_of_argv():
    text = registry.config_text(5001, "/lab/data", "/lab/htpasswd", "s3")
    assert 'addr: "127.0.0.1:5001"' in text
    assert 'path: "/lab/htpasswd"' in text and 'rootdirectory: "/lab/data"' in text
    assert registry.htpasswd_argv("/lab/htpasswd", "lab") == [
        "htpasswd", "-B", "-C", "10", "-c", "-i", "/lab/htpasswd", "lab"]


def test_sshd_config_is_key_only_root_on_loopback():
    lines = sshd.config_text(2223, "/k/host", "/k/auth").splitlines()
    for line in ("Port 2223", "ListenAddress 127.0.0.1", "HostKey /k/host", "AuthorizedKeysFile /k/auth",
                 "PermitRootLogin prohibit-password", "PasswordAuthentication no", "AllowUsers root",
                 "KbdInteractiveAuthentication no"):
        assert line in lines
    assert sshd.known_hosts_line(2223, "ssh-ed25519 AAAAkey comment\n") == "[127.0.0.1]:2223 ssh-ed25519 AAAAkey\n"
    assert sshd.keygen_argv("/k/id", "c") == ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "c", "-f", "/k/id"]


# --- state ----------------------------------------------------------------------------------------

def test_state_claims_only_grow(tmp_path):
    st = state.load(tmp_path / "s.json")
    assert st["engine_started"] is False and st["images"] == []
    st = state.merge(st, engine_started=True, images=["a"], registry_pid=5)
    st = state.merge(st, engine_started=False, images=["b", "a"], registry_pid=None)
    assert (st["engine_started"], st["images"], st["registry_pid"]) == (True, ["a", "b"], 5)
    state.save(st, tmp_path / "s.json")
    assert state.load(tmp_path / "s.json") == st
    with pytest.raises(KeyError):
        state.merge(st, nonsense=1)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ToolkitError, match="not valid JSON; fix or delete it"):
        state.load(tmp_path / "bad.json")


# --- dockerd start, with a fake dockerd (real processes, no engine) --------------------------------

@pytest.fixture
def fake_lab(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "LAB_DIR", tmp_path)
    monkeypatch.setattr(paths, "ENGINE_LOG", tmp_path / "dockerd.log")
    monkeypatch.setattr(paths, "ENGINE_PIDFILE", tmp_path / "dockerd.pid")
    monkeypatch.setattr(host, "DOCKER_PIDFILE", tmp_path / "docker.pid")
    return tmp_path


def _fake_dockerd(tmp_path, body):
    exe = tmp_path / "dockerd"
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


def test_dockerd_that_dies_reports_the_last_log_lines(fake_lab, monkeypatch):
    from invoke import Context

    exe = _fake_dockerd(fake_lab, "echo 'level=info msg=starting'\necho 'failed to start daemon: boom'\nexit 1\n")
    monkeypatch.setattr(host, "which", lambda c: str(exe))
    (fake_lab / "docker.pid").write_text("999999\n")  # stale: no such process
    with pytest.raises(ToolkitError) as err:
        host.start_engine(Runner(ctx=Context(), echo=False), answers=lambda: False, say=lambda m: None, wait=10)
    text = str(err.value)
    assert text.startswith(f"dockerd exited during startup; see {fake_lab / 'dockerd.log'}; last lines:\n")
    assert text.endswith("level=info msg=starting\nfailed to start daemon: boom")
    assert not (fake_lab / "docker.pid").exists()  # the stale pid file was removed


def test_dockerd_that_never_answers_times_out_with_its_log(fake_lab, monkeypatch):
    from invoke import Context

    exe = _fake_dockerd(fake_lab, "echo 'waiting for containerd'\nexec sleep 30\n")
    monkeypatch.setattr(host, "which", lambda c: str(exe))
    runner = Runner(ctx=Context(), echo=False)
    try:
        with pytest.raises(ToolkitError) as err:
            host.start_engine(runner, answers=lambda: False, say=lambda m: None, wait=1)
    finally:
        procs.stop(runner, fake_lab / "dockerd.pid", None, grace=5)
    assert str(err.value) == (f"dockerd did not answer within 1s; see {fake_lab / 'dockerd.log'}; last lines:\n"
                              "waiting for containerd")


# --- compose plugin link --------------------------------------------------------------------------

def test_compose_plugin_link_created_replaced_when_dangling_and_foreign_left_alone(tmp_path, monkeypatch):
    from invoke import Context

    plugin = tmp_path / "cli-plugins" / "docker-compose"
    monkeypatch.setattr(host, "PLUGIN", plugin)
    runner = Runner(ctx=Context(), echo=False)
    assert host.ensure_compose_plugin(runner) is True
    assert plugin.resolve() == host.compose_binary().resolve()
    assert host.ensure_compose_plugin(runner) is False  # already there
    plugin.unlink()
    plugin.symlink_to(tmp_path / "gone")
    assert host.ensure_compose_plugin(runner) is True and plugin.resolve() == host.compose_binary().resolve()
    plugin.unlink()
    plugin.write_text("#!/bin/sh\n")  # someone else's plugin (e.g. Docker Desktop's): not ours to touch
    assert host.ensure_compose_plugin(runner) is False and plugin.read_text() == "#!/bin/sh\n"


def test_postgres_stand_in_is_hadolint_clean_and_from_the_lab_base():
    import subprocess

    dockerfile = paths.IMAGES_DIR / "postgres" / "Dockerfile"
    result = subprocess.run([host.hadolint(), "--failure-threshold", "warning", "--no-color", str(dockerfile)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert standins.parse_from_lines(dockerfile.read_text()) == ["debian:13.7-slim"]
    assert (paths.IMAGES_DIR / "postgres" / "IMAGE").read_text().strip() == "postgres:17-trixie"
    assert os.access(paths.IMAGES_DIR / "postgres" / "docker-entrypoint.sh", os.X_OK)
