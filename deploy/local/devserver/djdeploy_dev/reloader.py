"""Reload the uWSGI worker as soon as a Python file of the mounted source changes (`inv up --dev` only).

uWSGI's own ``py-autoreload`` does a full graceful reload of the instance (master re-exec, 2-5 s here) and
misses an edit saved while it reloads. This watcher runs in each worker (the image uses lazy-apps, so a
respawned worker imports the code afresh): a daemon thread polls the modification times of the ``*.py``
files under the watched directories and, on a change, sends SIGHUP to its own worker: uWSGI finishes the
request in flight, the master respawns the worker, and the next request runs the new code (about 1 s).
The baseline is taken when the settings are imported, before the views are, so no edit is lost.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path


def snapshot(roots) -> dict:
    found = {}
    for root in roots:
        for path in Path(root).rglob("*.py"):
            try:
                found[str(path)] = path.stat().st_mtime_ns
            except OSError:
                continue
    return found


def watch(roots, interval: float, on_change) -> None:
    before = snapshot(roots)
    while True:
        time.sleep(interval)
        now = snapshot(roots)
        if now != before:
            changed = sorted(set(now.items()) ^ set(before.items()))[0][0]
            on_change(changed)
            return


def _reload_worker(changed: str) -> None:
    print(f"djdeploy dev: {changed} changed; reloading this worker", flush=True)
    os.kill(os.getpid(), signal.SIGHUP)


def start(roots, interval: float = 0.25) -> None:
    """Start the watcher thread once per process (only under uWSGI: manage.py commands do not reload)."""
    try:
        import uwsgi  # noqa: F401 - present only inside uWSGI
    except ImportError:
        return
    thread = threading.Thread(target=watch, args=(list(roots), interval, _reload_worker),
                              name="djdeploy-dev-reloader", daemon=True)
    thread.start()
