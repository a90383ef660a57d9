"""Benchmark: deploy of a code-only change to the three-node lab cluster, end to end, under load.

Brings up its own cluster (djbench, random loopback ports), writes a cluster env file in a scratch dir,
deploys a first release, then per round edits a Python file of the app in a scratch copy of the build
context (a real code-only change: the project layer and what follows rebuild) and runs the same code path
as `inv deploy` (build, push, migrate on the manager, rolling update, health check) while ~60 requests/s
are spread over the nodes' loopback ports. Prints medians, writes bench/results/cluster_deploy.json,
and removes the cluster at the end.

    python bench/cluster_deploy.py --rounds 3
"""

from __future__ import annotations

import argparse
import inspect
import io
import json
import secrets
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from loadgen import LoadGenerator  # noqa: E402

from deploy.ship import config, executor
from deploy.image import builder
from deploy.ship import stackfile  # noqa: E402
from deploy.lab import cluster, cluster_env  # noqa: E402
from deploy.lab.cluster_plan import ClusterSpec  # noqa: E402

NAME = "djbench"


def scratch_context(dest: Path) -> Path:
    for name in ("Dockerfile", "docker-entrypoint.sh", ".dockerignore"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "project", dest / "project", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".env"))
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="code-only deploys to time (medians are reported)")
    ap.add_argument("--rate", type=float, default=60.0, help="requests/s in total, spread over the nodes' ports")
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT / "tests" / "cluster"))
    from conftest import free_block  # noqa: E402  (random free loopback ports)

    cluster.down(NAME, echo=False)
    base = free_block(4)
    spec = cluster.up(spec=ClusterSpec(name=NAME, ssh_port=base + 4, app_port_base=base), echo=False)
    tmp = Path(tempfile.mkdtemp(prefix="djbenchcluster"))
    ctx = scratch_context(Path(tempfile.mkdtemp(prefix="djbenchctx")))
    views = ctx / "project" / "notes" / "views.py"
    original = views.read_text()
    stack = "djbc" + secrets.token_hex(3)
    rows, tags = [], []
    can_build_elsewhere = ("builder" in inspect.signature(executor.deploy).parameters
                           and "root" in inspect.signature(builder.build).parameters)

    def code_change(n):
        def build(tag):
            views.write_text(original + f"\n# code-only change {n}\n")
            return builder.build(tag=tag, quiet=True, root=ctx)
        return build

    def deploy(cfg, tag, n):
        kwargs = {"builder": code_change(n)} if can_build_elsewhere else {}
        return executor.deploy(cfg, tag=tag, out=io.StringIO(), **kwargs)

    try:
        cluster_env.push_stand_ins(out=io.StringIO())
        cluster_env.write(spec, env_dir=tmp, env="cluster", stack=stack, replicas=3)
        cfg = config.load("cluster", env_dir=tmp, environ={})
        if stackfile.stack_spec(cfg, "i", "t", "r", "c")["services"]["proxy"]["deploy"].get("mode") != "global":
            print("note: the stack runs one proxy task (not one per node); load goes to node 1 only", flush=True)
            ports = [spec.app_port(1)]
        else:
            ports = [spec.app_port(i) for i in spec.numbers]
        tags.append(f"{stack}-r0")
        deploy(cfg, tags[-1], 0)
        for n in range(1, args.rounds + 1):
            tags.append(f"{stack}-r{n}")
            gens = [LoadGenerator(p, "/", rate=args.rate / len(ports), seconds=600).start() for p in ports]
            outcome = deploy(cfg, tags[-1], n)
            stats = [g.stop() for g in gens]
            rows.append({"deploy_s": round(outcome.seconds, 1), "sent": sum(s.sent for s in stats),
                         "failed": sum(s.failed + s.non2xx for s in stats),
                         "rate": round(sum(s.sent for s in stats) / max(s.seconds for s in stats), 1),
                         "code_change": can_build_elsewhere})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        cluster.down(NAME, echo=False)
        shutil.rmtree(ctx, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
        import subprocess

        for tag in tags:
            subprocess.run(["docker", "rmi", f"djapp:{tag}", f"127.0.0.1:5000/djapp:{tag}"], capture_output=True)
    summary = {"rounds": len(rows), "deploy_median_s": statistics.median(r["deploy_s"] for r in rows),
               "failed_total": sum(r["failed"] for r in rows), "requests_total": sum(r["sent"] for r in rows),
               "rows": rows}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "cluster_deploy.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
