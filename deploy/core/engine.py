"""The Docker SDK client, created lazily, with a one-line error when no engine answers."""

from __future__ import annotations

import os

from deploy.core.errors import EngineUnavailable

FIX = "start Docker, or run `inv lab.up` to provision the lab engine"


def client(timeout: int = 120):
    """Return a connected ``docker.DockerClient`` or raise ``EngineUnavailable``."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:  # pragma: no cover - dependency missing
        raise EngineUnavailable("the Python package 'docker' is missing; run `pip install -r requirements-dev.txt`")
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        cli = docker.from_env(timeout=timeout)
        cli.ping()
    except DockerException as exc:
        raise EngineUnavailable(f"no Docker engine answers at {where} ({_short(exc)}); {FIX}") from None
    return cli


def available() -> bool:
    try:
        client(timeout=5).close()
        return True
    except EngineUnavailable:
        return False


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]
