"""The lab registry: Debian's docker-registry (distribution 2.8) on loopback, htpasswd (bcrypt) basic auth.

The Docker client sends basic auth to a plain-HTTP registry only when it counts as insecure; loopback
addresses are insecure by default, so 127.0.0.1:PORT needs no TLS (see LAB.md).
"""

from __future__ import annotations

import secrets
import urllib.error
import urllib.request

from deploy.lab import paths, procs

EXE = "/usr/bin/docker-registry"
CONFIG = paths.REGISTRY_DIR / "config.yml"
HTPASSWD = paths.REGISTRY_DIR / "htpasswd"
DATA = paths.REGISTRY_DIR / "data"
ENV_PORT = "DJDEPLOY_LAB_REGISTRY_PORT"


def config_text(port: int, data_dir, htpasswd, http_secret: str) -> str:
    """Pure: the registry's config.yml (YAML; every value quoted)."""
    return "\n".join([
        "version: 0.1",
        "log:",
        "  level: info",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: \"{data_dir}\"",
        "  delete:",
        "    enabled: true",
        "http:",
        f"  addr: \"127.0.0.1:{port}\"",
        f"  secret: \"{http_secret}\"",
        "  headers:",
        "    X-Content-Type-Options: [nosniff]",
        "auth:",
        "  htpasswd:",
        "    realm: \"djdeploy-lab\"",
        f"    path: \"{htpasswd}\"",
        "",
    ])


def htpasswd_argv(path, user: str) -> list[str]:
    """Pure: create ``path`` with a bcrypt entry for ``user``; the password comes on stdin (-i)."""
    return ["htpasswd", "-B", "-C", "10", "-c", "-i", str(path), user]


def start_argv() -> list[str]:
    return procs.start_daemon_argv(EXE, ["serve", str(CONFIG)], paths.REGISTRY_PIDFILE, paths.REGISTRY_LOG)


def answers(port: int = paths.REGISTRY_PORT, timeout: float = 1.0) -> bool:
    """True if a Docker registry with auth answers on 127.0.0.1:port (GET /v2/ -> 401 + API header)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v2/")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            headers = response.headers
    except urllib.error.HTTPError as exc:
        headers = exc.headers
    except OSError:
        return False
    return (headers.get("Docker-Distribution-Api-Version") or "").startswith("registry/2")


def pid() -> int | None:
    return procs.daemon_pid(paths.REGISTRY_PIDFILE, "docker-registry")


# Same shape as sshd.ensure (ours running? port taken? files, then start): `duplicates` pairs them. Kept apart
# on purpose: each daemon has its own files, secrets and readiness probe; a shared helper would need a callback each.
def ensure(runner, say=print) -> int | None:
    """Start the registry unless ours already runs and answers. Returns the pid we started, or None."""
    if pid() and answers():
        return None
    if procs.port_answers("127.0.0.1", paths.REGISTRY_PORT) and not pid():
        raise procs.port_taken_error(paths.REGISTRY_PORT, f"registry ({paths.REGISTRY})", ENV_PORT)
    for directory in (paths.REGISTRY_DIR, DATA):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not paths.REGISTRY_PASSWORD_FILE.exists() or not HTPASSWD.exists():
        password = secrets.token_urlsafe(24)
        runner.add_secrets(password)
        runner.put(password + "\n", str(paths.REGISTRY_PASSWORD_FILE), mode=0o600)
        runner.run(htpasswd_argv(HTPASSWD, paths.REGISTRY_USER), stdin=password + "\n", hide=True)
    if not CONFIG.exists():
        runner.put(config_text(paths.REGISTRY_PORT, DATA, HTPASSWD, secrets.token_hex(16)), str(CONFIG))
    if pid():  # ours, but not answering: restart it
        procs.stop(runner, paths.REGISTRY_PIDFILE, "docker-registry")
    runner.run(start_argv())
    procs.wait_for(answers, 20, f"the lab registry on {paths.REGISTRY}",
                   detail=lambda: procs.log_tail(paths.REGISTRY_LOG))
    return pid()


def stop(runner) -> None:
    procs.stop(runner, paths.REGISTRY_PIDFILE, "docker-registry")
