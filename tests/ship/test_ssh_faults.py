"""SSH faults: refused, no banner, unknown or changed host key: each fails within the timeout with a
one-line message, before any remote command runs. Command timeouts on the manager say what timed out."""

from __future__ import annotations

import io
import socket
import threading
import time

import pytest

from shiphelpers import free_port


def cfg_with(env, **environ):
    from deploy.ship import config

    return config.load("lab", env_dir=env.dir, environ={f"DJDEPLOY_{k}": str(v) for k, v in environ.items()})


def remote_fails(cfg, pattern):
    from deploy.ship import executor
    from deploy.core.errors import ToolkitError

    out = io.StringIO()
    started = time.monotonic()
    with pytest.raises(ToolkitError, match=pattern):
        executor.unlock(cfg, out=out)
    assert "[root@" not in out.getvalue() and out.getvalue() == ""
    return time.monotonic() - started


@pytest.mark.lab
def test_ssh_refused_fails_fast(env):
    port = free_port()
    took = remote_fails(cfg_with(env, SSH_PORT=port, CONNECT_TIMEOUT=3),
                        rf"^SSH connection to root@127.0.0.1:{port} refused; is sshd running there\?")
    assert took < 3


@pytest.mark.lab
def test_ssh_banner_never_sent_times_out(env):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    port = server.getsockname()[1]
    held = []
    threading.Thread(target=lambda: held.append(server.accept()), daemon=True).start()
    try:
        took = remote_fails(cfg_with(env, SSH_PORT=port, CONNECT_TIMEOUT=2),
                            rf"^SSH banner from root@127.0.0.1:{port} not received within 2s; is that port an SSH server\?$")
        assert 1.5 < took < 5
    finally:
        server.close()
        for conn, _ in held:
            conn.close()


@pytest.mark.lab
def test_unknown_host_key_is_rejected(env, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    remote_fails(cfg_with(env, KNOWN_HOSTS=empty),
                 rf"^SSH host key of root@127.0.0.1:2222 is not in {empty}; add the manager's key there")


@pytest.mark.lab
def test_changed_host_key_is_rejected(env, tmp_path):
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    kind, blob = (tmp_path / "k.pub").read_text().split()[:2]
    other = tmp_path / "known_hosts"
    other.write_text(f"[127.0.0.1]:2222 {kind} {blob}\n")  # same key type as the lab sshd's, another key
    remote_fails(cfg_with(env, KNOWN_HOSTS=other),
                 rf"^SSH host key of root@127.0.0.1:2222 does not match {other} \(changed key: possible man-in-the-middle\)")


@pytest.mark.lab
def test_remote_command_timeout_names_the_command(env):
    from deploy.ship import ssh
    from deploy.core.errors import CommandFailed

    run = ssh.remote_runner(env.cfg(), out=io.StringIO())
    try:
        started = time.monotonic()
        with pytest.raises(CommandFailed, match=r"^timed out after 1s: sleep 30$"):
            run.run(["sleep", "30"], timeout=1, hide=True)
        assert time.monotonic() - started < 5
    finally:
        run.ctx.close()
