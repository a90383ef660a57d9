"""The SSH "Swarm manager": Debian's sshd on loopback with its own config, host key and the lab key.

Root may log in with the lab key only. The host key is pinned in ``paths.KNOWN_HOSTS`` under
``[127.0.0.1]:PORT`` so clients can use strict host key checking.
"""

from __future__ import annotations

from pathlib import Path

from deploy.lab import paths, procs

EXE = "/usr/sbin/sshd"
CONFIG = paths.SSH_DIR / "sshd_config"
HOST_KEY = paths.SSH_DIR / "ssh_host_ed25519_key"
AUTHORIZED_KEYS = paths.SSH_DIR / "authorized_keys"
PRIVSEP_DIR = Path("/run/sshd")
ENV_PORT = "DJDEPLOY_LAB_SSH_PORT"


def config_text(port: int, host_key, authorized_keys) -> str:
    """Pure: sshd_config for the lab manager (key-only root login on 127.0.0.1:port)."""
    return "\n".join([
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {host_key}",
        f"AuthorizedKeysFile {authorized_keys}",
        "PidFile none",
        "PermitRootLogin prohibit-password",
        "AllowUsers root",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitEmptyPasswords no",
        "UsePAM no",
        # The files are 0600 and made by us, but a lab dir under /tmp (tests) would fail the
        # parent-directory checks of StrictModes.
        "StrictModes no",
        "X11Forwarding no",
        "AllowAgentForwarding no",
        "PrintMotd no",
        "Subsystem sftp internal-sftp",
        "LogLevel INFO",
        "",
    ])


def keygen_argv(path, comment: str) -> list[str]:
    """Pure: a new ed25519 key without passphrase at ``path`` (and ``path``.pub)."""
    return ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)]


def known_hosts_line(port: int, host_pub: str) -> str:
    """Pure: the pinned entry, e.g. ``[127.0.0.1]:2222 ssh-ed25519 AAAA...``."""
    kind, key = host_pub.split()[:2]
    return f"[127.0.0.1]:{port} {kind} {key}\n"


def start_argv() -> list[str]:
    return procs.start_daemon_argv(EXE, ["-D", "-e", "-f", str(CONFIG)], paths.SSHD_PIDFILE, paths.SSHD_LOG)


def answers(port: int = paths.SSH_PORT, timeout: float = 1.0) -> bool:
    """True if an SSH server sends its banner on 127.0.0.1:port."""
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(64).startswith(b"SSH-2.0-")
    except OSError:
        return False


def pid() -> int | None:
    return procs.daemon_pid(paths.SSHD_PIDFILE, "sshd")


# Same shape as registry.ensure on purpose (see the note there).
def ensure(runner, say=print) -> int | None:
    """Start the lab sshd unless ours already runs and answers. Returns the pid we started, or None."""
    if pid() and answers():
        return None
    if procs.port_answers("127.0.0.1", paths.SSH_PORT) and not pid():
        raise procs.port_taken_error(paths.SSH_PORT, f"SSH manager (127.0.0.1:{paths.SSH_PORT})", ENV_PORT)
    paths.SSH_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not paths.SSH_KEY.exists():
        runner.run(keygen_argv(paths.SSH_KEY, "djdeploy-lab"))
    if not HOST_KEY.exists():
        runner.run(keygen_argv(HOST_KEY, "djdeploy-lab-host"))
    client_pub = Path(f"{paths.SSH_KEY}.pub").read_text()
    runner.put(client_pub, str(AUTHORIZED_KEYS), mode=0o600)
    runner.put(known_hosts_line(paths.SSH_PORT, Path(f"{HOST_KEY}.pub").read_text()), str(paths.KNOWN_HOSTS),
               mode=0o644)
    runner.put(config_text(paths.SSH_PORT, HOST_KEY, AUTHORIZED_KEYS), str(CONFIG))
    runner.run(["mkdir", "-p", "-m", "0755", str(PRIVSEP_DIR)])
    runner.run([EXE, "-t", "-f", str(CONFIG)])  # config test: a bad config fails here, with sshd's message
    if pid():  # ours, but not answering: restart it
        procs.stop(runner, paths.SSHD_PIDFILE, "sshd")
    runner.run(start_argv())
    procs.wait_for(answers, 15, f"the lab sshd on 127.0.0.1:{paths.SSH_PORT}",
                   detail=lambda: procs.log_tail(paths.SSHD_LOG))
    return pid()


def stop(runner) -> None:
    procs.stop(runner, paths.SSHD_PIDFILE, "sshd")
