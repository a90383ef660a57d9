"""A browser-like client for the asset tests (tests/ship/test_assets_lab.py, tests/cluster/test_cluster_deploy.py):
threads that load a page and every /static/ file it references, and the edit that makes a release with new CSS/JS."""

from __future__ import annotations

import http.client
import re
import shutil
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r'(?:href|src)="(/static/[^"]+)"')
HASHED = re.compile(r"\.[0-9a-f]{12}\.[A-Za-z0-9]+$")


class Browser:
    """Threads that each load / and then every /static/ file the page references (one keep-alive connection per
    page, like a browser tab); every answer is recorded as (path, status or the error, the page's version).
    Over HTTPS with ``tls`` (an ssl.SSLContext): to 127.0.0.1 with SNI, certificate check and Host ``host``."""

    def __init__(self, port: int, threads: int = 3, host: str = "127.0.0.1", tls=None, pause: float = 0.03):
        self.port, self.results, self.pages, self.stop = port, [], set(), threading.Event()
        self.host, self.tls, self.pause = host, tls, pause
        self.lock = threading.Lock()
        self.workers = [threading.Thread(target=self.loop, daemon=True) for _ in range(threads)]
        for w in self.workers:
            w.start()

    def get(self, conn, path):
        conn.request("GET", path, headers={"Host": f"{self.host}:{self.port}" if self.tls else self.host})
        resp = conn.getresponse()
        return resp.status, resp.getheader("X-App-Version"), resp.read().decode("utf-8", "replace")

    def visit(self) -> None:
        if self.tls is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        else:
            from shiphelpers import LoopbackHTTPS

            conn = LoopbackHTTPS(self.host, self.port, timeout=10, context=self.tls)
        try:
            status, version, page = self.get(conn, "/")
            found = [("/", status, version)]
            for link in dict.fromkeys(LINK.findall(page)):
                found.append((link, self.get(conn, link)[0], version))
        except (OSError, http.client.HTTPException) as exc:
            found = [("?", f"error {type(exc).__name__}: {exc}", "")]
        finally:
            conn.close()
        with self.lock:
            self.results += found
            self.pages.add(tuple(sorted(p for p, _, _ in found[1:])))

    def loop(self) -> None:
        while not self.stop.is_set():
            self.visit()
            time.sleep(self.pause)

    def finish(self) -> list:
        self.stop.set()
        for w in self.workers:
            w.join(20)
        return self.results


def assets(results) -> set:
    return {p for p, _, _ in results if p.startswith("/static/") and HASHED.search(p)}


def summary(results) -> str:
    bad = [r for r in results if r[1] != 200 and not (isinstance(r[1], int) and 200 <= r[1] < 300)]
    return f"{len(results)} requests, {len(bad)} failed or non-2xx: {bad[:10]}"


def scratch_context(dest: Path) -> Path:
    """A copy of the build context (as bench/deploy_bench.py makes) that edit_release changes."""
    for name in ("Dockerfile", "docker-entrypoint.sh", ".dockerignore"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "project", dest / "project", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".env"))
    return dest


def edit_release(ctx: Path, name: str) -> None:
    """A release that changes both the CSS and the JS (new hashed names)."""
    static = ctx / "project" / "notes" / "static" / "notes"
    for file, line in (("app.css", f"/* release {name} */ body {{ margin: 0; }}"), ("app.js", f"// release {name}")):
        original = (ROOT / "project" / "notes" / "static" / "notes" / file).read_text()
        (static / file).write_text(original + "\n" + line + "\n")


# Run inside an app task: GET each path from 127.0.0.1:8000 (no proxy, so no retry hides a miss); "path status" lines.
TASK_SCRIPT = ("import http.client, sys\n"
               "for p in sys.argv[2:]:\n"
               "    c = http.client.HTTPConnection('127.0.0.1', 8000, timeout=10)\n"
               "    c.request('GET', p, headers={'Host': sys.argv[1]})\n"
               "    r = c.getresponse(); r.read(); print(p, r.status); c.close()\n")


def deploy_release(e, name: str, tail: int | None = None):
    """Deploy env ``e``'s scratch build context with release ``name``'s CSS and JS (through the real executor);
    print the deploy's output (its last ``tail`` characters) and return (outcome, output)."""
    import io

    from deploy.image import builder
    from deploy.ship import executor

    def build(tag):
        edit_release(e.ctx, name)
        return builder.build(tag=tag, quiet=True, root=e.ctx)

    out = io.StringIO()
    outcome = executor.deploy(e.cfg(), tag=e.tag(name), build=True, out=out, builder=build)
    text = out.getvalue()
    print(text if tail is None else text[-tail:])
    assert outcome.result == "ok", text
    return outcome, text


def statuses(lines: str, seen: dict) -> dict:
    for line in lines.splitlines():
        path, status = line.rsplit(" ", 1)
        seen.setdefault(path, set()).add(int(status))
    return seen
