"""The Docker SDK client, created lazily, with a one-line error when no engine answers."""

from __future__ import annotations

import os
from contextlib import contextmanager

from deploy.core.errors import EngineUnavailable, ToolkitError

FIX = "start Docker (or, for this repository's test lab, run `inv lab.up`)"


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


@contextmanager
def sdk_errors(step: str, fix: str):
    """Docker SDK and transport errors in the block become ONE line: which step failed, why, and ``fix``.

    ToolkitError passes through. ImageNotFound, BuildError, APIError (the engine's explanation), a timeout or a
    lost connection to the engine each get their own wording; the traceback is never shown."""
    import requests
    from docker.errors import APIError, BuildError, DockerException, ImageNotFound

    try:
        yield
    except ToolkitError:
        raise
    except ImageNotFound as exc:
        raise ToolkitError(f"{step} failed: image not found ({_explain(exc)}); {fix}") from None
    except BuildError as exc:
        raise ToolkitError(f"{step} failed: the build stopped ({_short(exc)}); {fix}") from None
    except APIError as exc:
        status = f"answered {exc.status_code}" if exc.status_code else "refused the request"
        raise ToolkitError(f"{step} failed: the Docker engine {status} ({_explain(exc)}); {fix}") from None
    except requests.exceptions.Timeout:
        raise ToolkitError(f"{step} failed: the Docker engine did not answer in time; check `docker info` "
                           f"(a busy or stuck engine), then rerun") from None
    except (requests.exceptions.ConnectionError, ConnectionError) as exc:
        raise ToolkitError(f"{step} failed: lost the connection to the Docker engine ({_short(exc)}); {FIX}, "
                           f"then rerun") from None
    except DockerException as exc:
        raise ToolkitError(f"{step} failed: {_short(exc)}; {fix}") from None


def _explain(exc) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return (text.strip().splitlines() or [type(exc).__name__])[0][:200]
