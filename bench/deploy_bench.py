"""Benchmark: deploy of a code-only change end to end, and rollback, on the lab, under load.

Each round edits a Python file of the app in a scratch copy of the build context (a real code-only
change: the project layer and everything after it rebuild), then runs the same code path as
`inv deploy` (build, push, migrate, roll, verify) while a load generator sends ~60 requests/s to
127.0.0.1; then rolls back to the previous release under load. Prints medians; writes JSON under
bench/results/. Uses its own stack (djtest<hex>, the lab tests' Env: HTTPS with its own Pebble; the load goes to
the HTTPS port) and removes it and its CA at the end. Prints each step's median (the deploy engine's step timings).

    python bench/deploy_bench.py --rounds 3
"""

from __future__ import annotations

import argparse
import io
import json
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

    from shiphelpers import HOST, Env, remove_stack  # the lab test helpers (unique stack, its own Pebble, cleanup)
    from deploy.image import builder
    from deploy.ship import executor

    tmp = Path(tempfile.mkdtemp(prefix="djbench"))
    env = Env(tmp)  # HTTPS like a real environment: certificates from the environment's own lab Pebble
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
            gen = LoadGenerator(env.https_port, "/", rate=args.rate, seconds=600, keepalive=False,
                                host_header=f"{HOST}:{env.https_port}", tls=env.tls_context()).start()
            deploy = executor.deploy(cfg, tag=tag, out=io.StringIO(), builder=code_change(n))
            started = time.monotonic()
            back = executor.rollback(cfg, to=tags[-2], out=io.StringIO())
            rollback = time.monotonic() - started
            stats = gen.stop()
            rows.append({"deploy_s": round(deploy.seconds, 1), "rollback_s": round(rollback, 1), "sent": stats.sent,
                         "failed": stats.failed, "non2xx": stats.non2xx, "rate": round(stats.rate, 1),
                         "deploy_steps": step_seconds(deploy), "rollback_steps": step_seconds(back)})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        remove_stack(env.stack)
        env.remove_ca()
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
    for kind in ("deploy", "rollback"):
        print(f"{kind}: median seconds per step (steps of >= 0.3 s)")
        for what, seconds in median_steps([r[f"{kind}_steps"] for r in rows]):
            print(f"  {seconds:6.2f}  {what}")
    return 0


def step_seconds(outcome) -> list:
    """[what, seconds] of each step that ran (the deploy engine's step timings), release tags as <tag>."""
    import re

    return [[re.sub(r"djtest[0-9a-f]{6}-r[0-9]+", "<tag>", f"[{r.step.where}] {r.step.kind} {r.step.what}"),
             round(r.seconds, 2)] for r in outcome.records]


def median_steps(rounds: list) -> list:
    """Each step's median over the rounds, in the order of the first round; steps under 0.3 s are left out."""
    by_step: dict = {}
    for steps in rounds:
        for what, seconds in steps:
            by_step.setdefault(what, []).append(seconds)
    return [(what, statistics.median(v)) for what, v in by_step.items() if statistics.median(v) >= 0.3]


if __name__ == "__main__":
    sys.exit(main())
