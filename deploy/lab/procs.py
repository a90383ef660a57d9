"""Background processes of the lab (dockerd, registry, sshd): start argv, stop, cheap liveness checks.

Daemons are started with Debian's ``start-stop-daemon --background`` (it forks, writes the pid file,
sends stdout and stderr to a log file) so the Runner, which waits for commands, can start them.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from deploy.core.errors import ToolkitError


def start_daemon_argv(exe: str, args: list[str], pidfile: Path, log: Path) -> list[str]:
    """Pure: start ``exe args`` in the background, pid in ``pidfile``, output appended to ``log``."""
    return ["start-stop-daemon", "--start", "--background", "--make-pidfile", "--pidfile", str(pidfile),
            "--output", str(log), "--exec", exe, "--", *args]


def stop(runner, pidfile: Path, exe_name: str | None, grace: float = 15.0) -> None:
    """Stop the daemon in ``pidfile`` (TERM, then KILL after ``grace`` s) and remove the file; ok if gone.

    Not `start-stop-daemon --stop`: where PID 1 does not reap (a bare container), a stopped daemon stays
    a zombie and start-stop-daemon reports it "refused to die". Zombies count as stopped here.
    """
    pid = daemon_pid(pidfile, exe_name)
    if pid:
        runner.run(["kill", "-TERM", str(pid)], check=False)
        try:
            wait_for(lambda: not pid_alive(pid), grace, f"{exe_name or 'pid'} {pid} to stop after TERM")
        except ToolkitError:
            runner.run(["kill", "-KILL", str(pid)], check=False)
            wait_for(lambda: not pid_alive(pid), 10, f"{exe_name or 'pid'} {pid} to stop after KILL")
    runner.run(["rm", "-f", str(pidfile)])


def read_pid(pidfile: Path) -> int | None:
    try:
        text = Path(pidfile).read_text().strip()
    except (FileNotFoundError, PermissionError):
        return None
    return int(text) if text.isdigit() else None


def pid_alive(pid: int | None, exe_name: str | None = None) -> bool:
    """True if ``pid`` runs (and, when given, its executable's basename is ``exe_name``)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:  # a zombie (dead, not yet reaped by its parent) is not running
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
    except (FileNotFoundError, IndexError):
        return False
    except PermissionError:
        pass
    if exe_name is None:
        return True
    try:  # comm, not cmdline: sshd rewrites its command line ("sshd: /usr/sbin/sshd ... [listener]")
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, PermissionError):
        return False
    return comm == exe_name[:15]


def daemon_pid(pidfile: Path, exe_name: str | None) -> int | None:
    """The pid in ``pidfile`` if that process is alive (and is ``exe_name``, when given); else None."""
    pid = read_pid(pidfile)
    return pid if pid_alive(pid, exe_name) else None


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_owner(port: int) -> str:
    """Best effort: 'name (pid N)' of the process listening on TCP ``port``, or ''."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    name = (proc / "comm").read_text().strip()
                    return f"{name} (pid {proc.name})"
        except OSError:
            continue
    return ""


def port_taken_error(port: int, what: str, env_var: str) -> ToolkitError:
    owner = port_owner(port)
    by = f" by {owner}" if owner else " by another process"
    return ToolkitError(f"port {port} on 127.0.0.1 is taken{by}, so the lab {what} cannot listen there; "
                        f"stop that process or set {env_var} to a free port")


def wait_for(check, timeout: float, what: str, interval: float = 0.2, detail=lambda: "") -> None:
    """Poll ``check()`` until true or ``timeout`` seconds pass; then raise naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() >= deadline:
            extra = detail()
            raise ToolkitError(f"timed out after {timeout:g}s waiting for {what}" + (f"\n{extra}" if extra else ""))
        time.sleep(interval)


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"
