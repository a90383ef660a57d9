"""Benchmark: deploy of a code-only change end to end, and rollback, on the lab, under load.

Each round edits a Python file of the app in a scratch copy of the build context (a real code-only
change: the project layer and everything after it rebuild), then runs the same code path as
`inv deploy` (build, push, migrate, roll, verify) while a load generator sends ~60 requests/s to
127.0.0.1; then rolls back to the previous release under load. Prints medians; writes JSON under
bench/results/. Uses its own stack (djbench<hex>) and removes it at the end.

    python bench/deploy_bench.py --rounds 3
"""

from __future__ import annotations

import argparse
import io
import json
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "tests" / "ship")]

from loadgen import LoadGenerator  # noqa: E402


def scratch_context(dest: Path) -> Path:
    for name in ("Dockerfile", "docker-entrypoint.sh", ".dockerignore"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "project", dest / "project", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".env"))
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="deploy+rollback rounds (medians are reported)")
    ap.add_argument("--rate", type=float, default=60.0, help="requests/s during each rollout")
    args = ap.parse_args()

    from shiphelpers import Env, free_port, remove_stack  # the lab test helpers (unique stack, env file, cleanup)
    from deploy.image import builder
    from deploy.ship import executor

    tmp = Path(tempfile.mkdtemp(prefix="djbench"))
    env = Env(tmp)
    env.stack = "djbench" + secrets.token_hex(3)
    env.port = free_port()
    env.write()
    ctx = scratch_context(Path(tempfile.mkdtemp(prefix="djbenchctx")))
    views = ctx / "project" / "notes" / "views.py"
    original = views.read_text()
    rows, tags = [], []

    def code_change(n):
        def build(tag):
            views.write_text(original + f"\n# code-only change {n}\n")
            return builder.build(tag=tag, quiet=True, root=ctx)
        return build

    try:
        cfg = env.cfg()
        first = f"{env.stack}-r0"
        tags.append(first)
        executor.deploy(cfg, tag=first, out=io.StringIO(), builder=code_change(0))
        for n in range(1, args.rounds + 1):
            tag = f"{env.stack}-r{n}"
            tags.append(tag)
            gen = LoadGenerator(env.port, "/", rate=args.rate, seconds=600, keepalive=False).start()
            deploy = executor.deploy(cfg, tag=tag, out=io.StringIO(), builder=code_change(n))
            started = time.monotonic()
            executor.rollback(cfg, to=tags[-2], out=io.StringIO())
            rollback = time.monotonic() - started
            stats = gen.stop()
            rows.append({"deploy_s": round(deploy.seconds, 1), "rollback_s": round(rollback, 1), "sent": stats.sent,
                         "failed": stats.failed, "non2xx": stats.non2xx, "rate": round(stats.rate, 1)})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        remove_stack(env.stack)
        shutil.rmtree(ctx, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
        import subprocess

        for tag in tags:
            subprocess.run(["docker", "rmi", f"djapp:{tag}", f"127.0.0.1:5000/djapp:{tag}"], capture_output=True)
    summary = {
        "rounds": len(rows),
        "deploy_median_s": statistics.median(r["deploy_s"] for r in rows),
        "rollback_median_s": statistics.median(r["rollback_s"] for r in rows),
        "failed_total": sum(r["failed"] + r["non2xx"] for r in rows),
        "requests_total": sum(r["sent"] for r in rows),
        "rows": rows,
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "deploy.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
