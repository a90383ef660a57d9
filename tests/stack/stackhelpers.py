"""Helpers for the stack tests (tests/stack is on sys.path): a Django superuser in a running stack."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def create_superuser(stack, username: str, password: str) -> None:
    """A Django superuser in the running app (idempotent). `inv manage` does not pass DJANGO_SUPERUSER_* into
    its one-off container, so this runs createsuperuser in the app container with the values passed by name
    from our environment (the password is never on a command line)."""
    env = {**stack.env, "DJANGO_SUPERUSER_USERNAME": username, "DJANGO_SUPERUSER_PASSWORD": password,
           "DJANGO_SUPERUSER_EMAIL": f"{username}@example.org"}
    argv = ["docker", "compose", "--project-directory", str(ROOT), "--project-name", stack.project]
    for name in stack.env["COMPOSE_FILE"].split(":"):
        argv += ["--file", str(ROOT / name)]
    argv += ["exec", "-T", "-e", "DJANGO_SUPERUSER_USERNAME", "-e", "DJANGO_SUPERUSER_PASSWORD", "-e",
             "DJANGO_SUPERUSER_EMAIL", "app", "python3", "manage.py", "createsuperuser", "--noinput"]
    out = subprocess.run(argv, cwd=ROOT, env=env, text=True, capture_output=True, timeout=120)
    assert out.returncode == 0 or "already taken" in out.stderr, out.stdout + out.stderr
