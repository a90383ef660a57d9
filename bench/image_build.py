"""Benchmark: image size, cold build (no cache) vs rebuild after a one-line view change (ratio per run).

Usage: python bench/image_build.py [--runs 2]. Builds a copy of the repository in a temp dir (the working tree is
never touched), tags djapp-bench:*, and removes those tags afterwards.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from image_common import ROOT, median

from deploy.core import engine
from deploy.image import builder


def build(cli, root, tag, nocache, buildargs=None, labels=None, timeline=None):
    """One build of ``root`` the way `inv build` sends it (deploy.image.builder's context: .dockerignore, the CA
    bundle, the installed image contract when the project has none); seconds. ``timeline`` collects (seconds since
    start, log line) pairs and the image id under "id" (bench/wagtail_build.py reads the steps from it)."""
    t0 = time.monotonic()
    context = builder.context_tar(root, builder.ca_bundle(), builder.contract_dir(root))
    for chunk in cli.api.build(fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True, nocache=nocache,
                               decode=True, buildargs=buildargs or {"APP_VERSION": "bench"}, labels=labels):
        if "error" in chunk:
            raise SystemExit(chunk["error"])
        if timeline is not None:
            for line in chunk.get("stream", "").splitlines():
                timeline.append((time.monotonic() - t0, line))
            if "ID" in chunk.get("aux", {}):
                timeline.append((time.monotonic() - t0, "id " + chunk["aux"]["ID"]))
    return time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    cli = engine.client(timeout=1200)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns(".git", "__pycache__", ".pytest_cache"))
        views = root / "project" / "notes" / "views.py"
        original = views.read_text()
        for run in range(args.runs):
            views.write_text(original)
            cold = build(cli, root, "djapp-bench:cold", nocache=True)
            # a no-cache build's layers are not reused by the next build on this engine (20.10, classic builder):
            # prime the cache with the same tree first, as a developer's previous build would have
            prime = build(cli, root, "djapp-bench:warm", nocache=False)
            # one line of the view changes (the text the page renders when there is no database)
            views.write_text(original.replace('"no_db": True}', f'"no_db": True, "run": {run + time.time():.0f}}}', 1))
            warm = build(cli, root, "djapp-bench:warm", nocache=False)
            rows.append((cold, warm, warm / cold))
            print(f"run {run + 1}: cold {cold:.1f}s  (cache priming {prime:.1f}s)  rebuild after view change {warm:.2f}s"
                  f"  ratio {warm / cold:.1%}",
                  flush=True)
    size = cli.images.get("djapp-bench:warm").attrs["Size"]
    print(f"image size: {size / 1e6:.1f} MB")
    print(f"median cold build {median([r[0] for r in rows]):.1f}s, median rebuild {median([r[1] for r in rows]):.2f}s, "
          f"median ratio {median([r[2] for r in rows]):.1%} ({len(rows)} runs)")
    for tag in ("djapp-bench:cold", "djapp-bench:warm"):
        cli.images.remove(tag, noprune=False)


if __name__ == "__main__":
    main()
