#!/usr/bin/env python3
"""Benchmark `inv up --dev`: from a saved edit to the changed page being served (issue 14). Median of N.

Runs on a private copy of the project (DJDEPLOY_PROJECT_DIR; the checkout is never edited), a private compose
project (djbenchdev<pid>), a private image repository (built once from the layer cache) and a free loopback port;
removes all of it at the end. Each round saves an edit and polls (every 20 ms) until the page shows it:

    view      project/notes/views.py (the index view returns a marker): the worker reloads
    template  project/notes/templates/notes/index.html: read from disk on the next request

Edits are spaced by --gap seconds (a developer saves every few seconds, not ten times a second).
With --compare, the same rounds are run a second time with uWSGI's own ``py-autoreload 1`` instead of the
worker watcher (an extra override file in the copy), for the ratio measured in one run.

    python3 bench/dev_loop.py [--runs 10] [--gap 1.5] [--compare]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COPY = ("tasks.py", "deploy", "project", "djdeploy_django", "pyproject.toml", "Dockerfile", "docker-entrypoint.sh", ".dockerignore",
        "docker-compose.yml", "docker-compose.dev.yml")
direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def inv(env, *args):
    out = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=env["DJDEPLOY_PROJECT_DIR"], env=env,
                         capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        sys.exit(f"inv {' '.join(args)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return out


def body(url: str) -> str:
    try:
        with direct.open(url, timeout=2) as resp:
            return resp.read().decode()
    except OSError:
        return ""


def edit_to_served(path: Path, old: str, new: str, url: str, marker: str, timeout: float = 15.0) -> float | None:
    """Seconds from the save to ``marker`` being served; None if it never was within ``timeout`` (a lost edit)."""
    text = path.read_text()
    path.write_text(text.replace(old, new, 1))
    started = time.monotonic()
    while marker not in body(url):
        if time.monotonic() - started > timeout:
            return None
        time.sleep(0.02)
    return time.monotonic() - started


VIEW_DOC = '    """Lists notes and creates one (POST, CSRF-protected). Without a database it renders a notice."""'


def rounds(copy: Path, port: int, runs: int, gap: float) -> dict:
    """``runs`` view edits (the index view returns a marker early), then the view restored, then ``runs``
    template edits; every edit saved ``gap`` seconds after the previous one was served."""
    views, template = copy / "project/notes/views.py", copy / "project/notes/templates/notes/index.html"
    url, original = f"http://127.0.0.1:{port}/", views.read_text()
    results = {"view": [], "template": []}
    body(url)  # Django imports the views on the first request: load them before the first edit
    old = VIEW_DOC
    for i in range(runs):
        time.sleep(gap)
        new = VIEW_DOC + f'\n    return HttpResponse("edited view {i}", content_type="text/plain")'
        results["view"].append(edit_to_served(views, old, new, url, f"edited view {i}"))
        old = new
    views.write_text(original)
    edit_to_served(views, VIEW_DOC, VIEW_DOC, url, "<h1>", timeout=60)  # wait for the template view again
    old = "<h1>Notes</h1>"
    for i in range(runs):
        time.sleep(gap)
        new = f"<h1>Notes {i}</h1>"
        results["template"].append(edit_to_served(template, old, new, url, new))
        old = new
    return results


def summary(values: list) -> dict:
    """Median, min, max of the served edits; ``lost``: edits never served within the timeout (15 s)."""
    served = [v for v in values if v is not None]
    out = {"runs": len(values), "lost": len(values) - len(served),
           "all_s": [None if v is None else round(v, 3) for v in values]}
    if served:
        out.update(median_s=round(statistics.median(served), 3), min_s=round(min(served), 3),
                   max_s=round(max(served), 3))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="edits of each kind (median of these)")
    parser.add_argument("--gap", type=float, default=1.5, help="seconds between two saved edits")
    parser.add_argument("--compare", action="store_true", help="also measure uWSGI's py-autoreload (same rounds)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="djbench-dev-"))
    copy = tmp / "proj"
    for rel in COPY:
        src, dst = ROOT / rel, copy / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "staticfiles", ".env"))
         if src.is_dir() else shutil.copy2(src, dst))
    port, repo = free_port(), f"djbenchdev{os.getpid()}"
    env = {**os.environ, "DJDEPLOY_PROJECT_DIR": str(copy), "COMPOSE_PROJECT_NAME": repo, "APP_IMAGE": repo,
           "APP_PORT": str(port), "COMPOSE_FILE": "docker-compose.yml"}
    try:
        inv(env, "build", "--tag", "bench", "--quiet")
        started = time.monotonic()
        inv(env, "up", "--dev")
        up_s = time.monotonic() - started
        results = rounds(copy, port, args.runs, args.gap)
        if args.compare:
            (copy / "docker-compose.pyreload.yml").write_text(
                "services:\n  app:\n    environment:\n      UWSGI_PY_AUTORELOAD: '1'\n"
                "      DJDEPLOY_DEV_RELOADER: 'off'\n")
            env["COMPOSE_FILE"] = "docker-compose.yml:docker-compose.pyreload.yml"
            for rel in ("project/notes/views.py", "project/notes/templates/notes/index.html"):
                shutil.copy2(ROOT / rel, copy / rel)  # start the second series from the original files
            inv(env, "up", "--dev")
            results["py_autoreload"] = rounds(copy, port, args.runs, args.gap)
    finally:
        subprocess.run([sys.executable, "-m", "invoke", "down", "--volumes", "--yes"], cwd=copy, env=env,
                       capture_output=True, timeout=300)
        subprocess.run(["docker", "image", "rm", "-f", f"{repo}:bench", f"{repo}:latest"], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.platform(),
              "cpus": os.cpu_count(), "load_avg": os.getloadavg(), "gap_s": args.gap,
              "inv_up_dev_s": round(up_s, 2), "view": summary(results["view"]),
              "template": summary(results["template"])}
    if "py_autoreload" in results:
        report["py_autoreload_view"] = summary(results["py_autoreload"]["view"])
        report["py_autoreload_template"] = summary(results["py_autoreload"]["template"])
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
