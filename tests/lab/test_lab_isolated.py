"""A second, isolated lab (own directory and ports, the shared engine): up claims nothing it found,
down leaves nothing of it; a taken port is a one-line error naming the port, with nothing done."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from labhelpers import run_inv
from deploy.lab import procs, provision, registry, sshd, standins

pytestmark = pytest.mark.lab


def _alive(pid):
    return procs.pid_alive(pid)


def _labelled(docker_client, lab_dir):
    flt = {"label": f"djdeploy.lab={lab_dir}"}
    return (docker_client.containers.list(all=True, filters=flt) + docker_client.networks.list(filters=flt)
            + docker_client.volumes.list(filters=flt) + docker_client.images.list(filters=flt))


@pytest.fixture
def isolated(isolated_lab_env, request):
    """The isolated lab's env; its finalizer takes it down even when the test failed half-way."""
    def cleanup():
        if Path(isolated_lab_env["DJDEPLOY_LAB_DIR"]).exists():
            result = run_inv("lab.down", "--yes", env=isolated_lab_env, timeout=120)
            print(result.stdout, result.stderr)
    request.addfinalizer(cleanup)
    return isolated_lab_env


def test_isolated_lab_up_then_down_leaves_nothing(isolated, docker_client):
    lab_dir = Path(isolated["DJDEPLOY_LAB_DIR"])
    rport, sport = int(isolated["DJDEPLOY_LAB_REGISTRY_PORT"]), int(isolated["DJDEPLOY_LAB_SSH_PORT"])
    swarm_before = docker_client.info()["Swarm"]
    lab_images = provision.base_images() + [s.name for s in standins.stand_ins()]
    images_before = {n: docker_client.images.get(n).id for n in lab_images}

    up = run_inv("lab.up", "--deploy", env=isolated, timeout=300)
    assert up.returncode == 0, up.stdout + up.stderr
    state = json.loads((lab_dir / "state.json").read_text())
    # It found the engine answering, the swarm active, the images and the compose plugin there: claims none.
    assert (state["engine_started"], state["swarm_initialized"], state["images"], state["compose_plugin"]) == (
        False, False, [], None)
    pids = [state["registry_pid"], state["sshd_pid"]]
    assert all(_alive(p) for p in pids), state
    assert registry.answers(rport) and sshd.answers(sport)
    assert (lab_dir / "ssh" / "known_hosts").read_text().startswith(f"[127.0.0.1]:{sport} ssh-ed25519 ")
    status = run_inv("lab.status", env=isolated, timeout=60)
    assert f"up on 127.0.0.1:{rport}" in status.stdout and f"up on 127.0.0.1:{sport}" in status.stdout

    again = run_inv("lab.up", "--deploy", env=isolated, timeout=60)  # idempotent here too: same processes
    assert again.returncode == 0 and json.loads((lab_dir / "state.json").read_text()) == state

    down = run_inv("lab.down", "--yes", env=isolated, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not any(_alive(p) for p in pids)
    assert not procs.port_answers("127.0.0.1", rport) and not procs.port_answers("127.0.0.1", sport)
    assert not lab_dir.exists()
    assert _labelled(docker_client, lab_dir) == []
    # The shared engine, swarm and images are untouched.
    assert docker_client.info()["Swarm"]["NodeID"] == swarm_before["NodeID"]
    assert docker_client.info()["Swarm"]["LocalNodeState"] == "active"
    assert {n: docker_client.images.get(n).id for n in lab_images} == images_before  # others build in parallel


@pytest.mark.parametrize("which,env_var,what", [
    ("DJDEPLOY_LAB_REGISTRY_PORT", "DJDEPLOY_LAB_REGISTRY_PORT", "registry"),
    ("DJDEPLOY_LAB_SSH_PORT", "DJDEPLOY_LAB_SSH_PORT", "SSH manager")])
def test_taken_port_is_a_one_line_error_naming_it(isolated, which, env_var, what):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env = {**isolated, which: str(port)}
        result = run_inv("lab.up", "--deploy", env=env, timeout=120)
    me = Path("/proc/self/comm").read_text().strip()
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: port {port} on 127.0.0.1 is taken by {me} (pid {os.getpid()}), so the lab {what} "
        f"(127.0.0.1:{port}) cannot listen there; stop that process or set {env_var} to a free port"
    ), result.stderr
    assert not Path(isolated["DJDEPLOY_LAB_DIR"]).exists()  # nothing was done
