"""Shared helpers of the image benchmarks (bench/image_*.py): medians, containers on loopback, cleanup by label."""

from __future__ import annotations

import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from deploy.image.smoke import booted, free_port, get  # noqa: E402

LABEL = {"djdeploy.bench": "image"}


def median(values):
    return statistics.median(values) if values else float("nan")


def cleanup(cli):
    for c in cli.containers.list(all=True, filters={"label": "djdeploy.bench=image"}):
        c.remove(force=True)
    for n in cli.networks.list(filters={"label": "djdeploy.bench=image"}):
        n.remove()
    for v in cli.volumes.list(filters={"label": "djdeploy.bench=image"}):
        v.remove(force=True)


def app_env(**extra):
    return {"DATABASE_URL": "", "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DJANGO_ALLOWED_HOSTS": "localhost,127.0.0.1", **extra}


def run_app(cli, ref, env, **kw):
    port = free_port()
    c = cli.containers.run(ref, detach=True, environment=env, labels=LABEL,
                           ports={"8000/tcp": ("127.0.0.1", port)}, **kw)
    return c, port


def wait_200(port, path="/health/", timeout=60.0, container=None, all_workers=False):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if get(port, path, timeout=2)[0] == 200 and (
                    not all_workers or booted(container.logs().decode("utf-8", "replace"))):
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.01)
    logs = container.logs().decode("utf-8", "replace")[-2000:] if container is not None else ""
    raise RuntimeError(f"no 200 from 127.0.0.1:{port}{path} within {timeout}s\n{logs}")
