"""The SSH Swarm manager: Fabric with strict host key checking sees a Leader; a wrong or unknown host key
is refused before any command runs; root gets in with the lab key only."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest

from deploy.lab import paths

pytestmark = pytest.mark.lab


def strict_connection(known_hosts: Path, key: Path = paths.SSH_KEY):
    """A Fabric Connection whose client trusts only ``known_hosts`` and rejects anything else."""
    import paramiko
    from fabric import Connection

    conn = Connection(paths.SSH_HOST, user=paths.SSH_USER, port=paths.SSH_PORT, connect_timeout=10,
                      connect_kwargs={"key_filename": str(key), "look_for_keys": False, "allow_agent": False,
                                      "banner_timeout": 10, "auth_timeout": 10})
    client = paramiko.SSHClient()  # Fabric's own client auto-adds unknown keys and reads ~/.ssh: replace it
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    conn.client = client
    return conn


@pytest.fixture
def marker():
    path = Path("/tmp") / f"djdeploy-lab-test-{secrets.token_hex(6)}"
    yield path
    path.unlink(missing_ok=True)


def test_fabric_strict_host_key_sees_a_leader():
    pinned = paths.KNOWN_HOSTS.read_bytes()
    assert pinned.startswith(f"[127.0.0.1]:{paths.SSH_PORT} ssh-ed25519 ".encode())
    with strict_connection(paths.KNOWN_HOSTS) as conn:
        out = conn.run("docker node ls --format '{{.Self}} {{.ManagerStatus}} {{.Status}}'", hide=True, timeout=30, in_stream=False)
    assert "true Leader Ready" in out.stdout.splitlines()
    assert paths.KNOWN_HOSTS.read_bytes() == pinned  # nothing was added


def _other_key(tmp_path) -> str:
    key = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key.with_suffix(".pub").read_text().split()[:2]


def test_wrong_pinned_host_key_is_refused_before_any_command(tmp_path, marker):
    import paramiko

    kind, key = _other_key(tmp_path)
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[127.0.0.1]:{paths.SSH_PORT} {kind} {key}\n")
    with pytest.raises(paramiko.BadHostKeyException):
        with strict_connection(wrong) as conn:
            conn.run(f"touch {marker}", hide=True, timeout=10, in_stream=False)
    assert not marker.exists()


def test_unknown_host_is_refused_not_added(tmp_path, marker):
    import paramiko

    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        with strict_connection(empty) as conn:
            conn.run(f"touch {marker}", hide=True, timeout=10, in_stream=False)
    assert not marker.exists() and empty.read_text() == ""


def test_root_needs_the_lab_key(tmp_path, marker):
    import paramiko

    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    with pytest.raises(paramiko.AuthenticationException):
        with strict_connection(paths.KNOWN_HOSTS, key=stranger) as conn:
            conn.run(f"touch {marker}", hide=True, timeout=10, in_stream=False)
    assert not marker.exists()
