"""The lab registry, seen from the cluster's nodes.

The deploy pushes ``127.0.0.1:5000/<app>:<tag>`` to the lab registry (a docker-registry process on the
host's loopback). A node's engine must pull that SAME name, so inside every node socat listens on
127.0.0.1:5000 and forwards to ``<gateway>:5000``, where this module runs a second docker-registry
process: the lab registry's own config file (same storage directory, same htpasswd, same http secret),
with only the listen address overridden (``REGISTRY_HTTP_ADDR``) to the cluster network's gateway.

Why this way: dockerd treats loopback registries as insecure-allowed, so no ``--insecure-registry`` and
no lab CA are needed, and the image name is identical on the host and on every node. The gateway address
exists only on the host's side of the cluster bridge, so nothing outside this machine can reach it.
Pulls only go through this endpoint; pushes go through the lab's loopback one (both see one storage).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

from deploy.core.errors import ToolkitError
from deploy.lab import paths
from deploy.lab.cluster_state import ClusterFiles


def config_file():
    return paths.REGISTRY_DIR / "config.yml"


def serve_argv() -> list[str]:
    return ["docker-registry", "serve", str(config_file())]


def serve_env(gateway: str, port: int) -> dict[str, str]:
    """Environment overrides for the second process (docker-registry reads REGISTRY_<SECTION>_<KEY>)."""
    return {"REGISTRY_HTTP_ADDR": f"{gateway}:{port}", "REGISTRY_LOG_LEVEL": "warn"}


MARKER = "DJDEPLOY_CLUSTER_REGISTRY"  # in the endpoint's environment: found again even without its pid file


def endpoints() -> dict[int, str]:
    """{pid: cluster name} of the docker-registry processes started for lab clusters (marker in their environment)."""
    found = {}
    prefix = f"{MARKER}=".encode()
    for proc in os.listdir("/proc"):
        if not proc.isdigit():
            continue
        try:
            with open(f"/proc/{proc}/environ", "rb") as fh:
                marks = [v for v in fh.read().split(b"\0") if v.startswith(prefix)]
            if not marks:
                continue
            with open(f"/proc/{proc}/cmdline", "rb") as fh:
                if any(part.endswith(b"docker-registry") for part in fh.read().split(b"\0")):
                    found[int(proc)] = marks[0][len(prefix):].decode()
        except OSError:
            continue
    return found


def _pid(files: ClusterFiles) -> int | None:
    try:
        pid = int(files.registry_pid.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read().split(b"\0")
    except OSError:
        return None
    return pid if any(part.endswith(b"docker-registry") for part in cmdline) else None


def answers(host: str, port: int, timeout: float = 1.0) -> bool:
    from deploy.lab.procs import port_answers

    return port_answers(host, port, timeout)


def ensure(files: ClusterFiles, gateway: str, port: int, say, timeout: float = 15.0) -> None:
    """Start the gateway endpoint unless it already runs; wait until it accepts connections."""
    if not config_file().exists():
        raise ToolkitError(f"the lab registry's config {config_file()} is missing; run `inv lab.up` first")
    if _pid(files) and answers(gateway, port):
        return
    stop(files)
    say(f"[local] starting the registry endpoint for the cluster on {gateway}:{port} (log {files.registry_log})")
    env = dict(os.environ, **serve_env(gateway, port), **{MARKER: files.name})
    with open(files.registry_log, "ab") as log:
        proc = subprocess.Popen(serve_argv(), env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    files.registry_pid.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers(gateway, port):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    tail = _tail(files.registry_log)
    stop(files)
    raise ToolkitError(f"the cluster's registry endpoint did not listen on {gateway}:{port} within "
                       f"{timeout:g}s; its last log lines:\n{tail}\ncheck that nothing else uses that address")


def stop(files: ClusterFiles, timeout: float = 10.0) -> bool:
    """Stop the endpoint this cluster started (found by its pid file); True if one was running."""
    pids = sorted({p for p in (_pid(files), *(p for p, n in endpoints().items() if n == files.name)) if p})
    files.registry_pid.unlink(missing_ok=True)
    for pid in pids:
        _terminate(pid, timeout)
    return bool(pids)


def _terminate(pid: int, timeout: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                break
        except ChildProcessError:
            pass
        time.sleep(0.1)
    else:
        if os.path.exists(f"/proc/{pid}"):
            os.kill(pid, signal.SIGKILL)


def _tail(path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"
