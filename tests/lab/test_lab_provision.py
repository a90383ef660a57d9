"""The default lab: a second `inv lab.up` changes nothing and is fast; status shows every component up."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from labhelpers import run_inv
from deploy.lab import paths, registry, sshd

pytestmark = pytest.mark.lab


def _snapshot(docker_client):
    from deploy.lab import provision, standins

    names = provision.base_images() + [s.name for s in standins.stand_ins()]
    return {"images": {n: docker_client.images.get(n).id for n in names},
            "registry_pid": registry.pid(), "sshd_pid": sshd.pid(),
            "swarm": docker_client.info()["Swarm"]["NodeID"]}


def test_second_run_changes_nothing_and_is_fast(docker_client):
    first = run_inv("lab.up", "--deploy")  # whatever state the lab was in, this makes it up
    assert first.returncode == 0, first.stdout + first.stderr
    before = _snapshot(docker_client)
    state_before = paths.STATE_FILE.read_text()
    started = time.monotonic()
    second = run_inv("lab.up", "--deploy")
    seconds = time.monotonic() - started
    print(f"second lab.up: {seconds:.2f}s")
    assert second.returncode == 0, second.stdout + second.stderr
    assert before == _snapshot(docker_client)
    assert paths.STATE_FILE.read_text() == state_before
    for word in ("building", "debootstrap", "apt-get", "start-stop-daemon", "swarm init"):
        assert word not in second.stdout
    assert seconds < 30, f"a second lab.up took {seconds:.1f}s; it must only check (target: seconds)"


def test_status_shows_every_component_up():
    result = run_inv("lab.status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for component in ("engine", "compose", "hadolint", "image debian:trixie-slim", "image postgres:17-trixie",
                      "registry", "sshd", "swarm"):
        [line] = [ln for ln in lines if ln.split()[1:2] == component.split()[:1]
                  and component in ln]
        assert line.startswith("up "), line


def test_compose_plugin_and_hadolint_work():
    out = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "v2." in out.stdout, out.stdout + out.stderr
    from deploy.lab import host

    out = subprocess.run([host.hadolint(), "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "2.15" in out.stdout


def test_state_file_records_what_the_lab_made():
    st = json.loads(paths.STATE_FILE.read_text())
    assert set(st) >= {"engine_started", "swarm_initialized", "registry_pid", "sshd_pid", "images"}
