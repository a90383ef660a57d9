"""Helpers for the lab tests (tests/lab is on sys.path): free ports, `inv` in a subprocess, polling."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
TEST_LABEL = {"djdeploy.test": "lab"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_inv(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m invoke ARGS` from the repository root; output captured; never raises on exit code."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=full_env, text=True,
                          capture_output=True, timeout=timeout)


def poll(check, timeout: float, what: str, interval: float = 0.25):
    """Return check()'s first truthy value; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
