"""A developer's laptop, simulated: a NON-ROOT user with its own checkout and virtualenv (tests/lab is on sys.path).

``LaptopUser`` is a real Linux account made for one test session (useradd; removed with its home at the end),
optionally in the docker group. Its commands run through ``runuser`` with a clean environment (HOME, USER,
PATH = its venv first), optionally inside another network namespace (``nsenter -n``: the nested engine's
"machine", where 127.0.0.1 is that machine's loopback, as Docker Desktop forwards published ports).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKOUT = ("tasks.py", "deploy", "project", "Dockerfile", "docker-entrypoint.sh", ".dockerignore", "README.md",
            "docker-compose.yml", "docker-compose.dev.yml", ".env.example", "requirements-dev.txt", "pytest.ini")
SYSTEM_PYTHON = "/usr/bin/python3"   # what a laptop has; the root's pyenv under /root is not readable by others
FIRST_COMMAND = "python3 -m pip install -r requirements-dev.txt && inv lab.up && inv up"


class LaptopUser:
    def __init__(self, name: str, docker_group: bool = True):
        self.name = name
        self.home = Path("/home") / name
        self.repo = self.home / "djdeploy"
        self.venv = self.home / "venv"
        groups = ["--groups", "docker"] if docker_group else []
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", *groups, name], check=True,
                       capture_output=True, timeout=60)

    def env(self, **extra: str) -> dict:
        passthrough = {k: os.environ[k] for k in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "SSL_CERT_DIR",
                                                  "PIP_FIND_LINKS", "PIP_DEFAULT_TIMEOUT") if k in os.environ}
        return {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name, "LANG": "C.UTF-8",
                "PATH": f"{self.venv}/bin:/usr/local/bin:/usr/bin:/bin", "PYTHONUNBUFFERED": "1",
                "PIP_DISABLE_PIP_VERSION_CHECK": "1", **passthrough, **extra}

    def run(self, script: str, env: dict | None = None, timeout: float = 900, netns_pid: int | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
        """``bash -c script`` as this user (in ``cwd``, default its checkout); never raises on the exit code."""
        wrapped = ["runuser", "-u", self.name, "--", "env", "-i", *[f"{k}={v}" for k, v in (env or self.env()).items()],
                   "bash", "-c", f"cd {cwd or self.repo} && {script}"]
        if netns_pid:
            wrapped = ["nsenter", "--target", str(netns_pid), "--net", "--", *wrapped]
        started = time.monotonic()
        out = subprocess.run(wrapped, capture_output=True, text=True, timeout=timeout)
        out.seconds = time.monotonic() - started
        return out

    def make_checkout(self) -> Path:
        """The user's own clone of the project (files copied from the tree under test, committed as the user)."""
        for rel in CHECKOUT:
            src, dst = ROOT / rel, self.repo / rel
            if not src.exists():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "staticfiles", ".env",
                                                                        "*.env"))
            else:
                shutil.copy2(src, dst)
        subprocess.run(["chown", "-R", f"{self.name}:{self.name}", str(self.home)], check=True, timeout=60)
        out = self.run("git init -q && git add -A && git -c user.name=laptop -c user.email=laptop@example.invalid "
                       "commit -q -m checkout", cwd=self.repo)
        assert out.returncode == 0, out.stderr
        return self.repo

    def make_venv(self) -> subprocess.CompletedProcess:
        """A virtualenv of the system Python, so that `python3 -m pip install` works without root."""
        out = self.run(f"{SYSTEM_PYTHON} -m venv {self.venv}", cwd=self.home, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        return out

    def remove(self) -> None:
        subprocess.run(["userdel", "--remove", self.name], capture_output=True, timeout=60)


def user_name(tag: str) -> str:
    return f"djl{tag}{os.getpid() % 100000}"
