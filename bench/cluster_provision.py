"""Benchmark: lab cluster provisioning (N nodes, swarm formed) with the node image cached.

Each run: `up` from nothing (network, volumes, nodes, engines ready, swarm init + joins, all Ready),
then a second `up` (the idempotent check), then `down`. Reports the median of the runs.

    python bench/cluster_provision.py [--runs 5] [--nodes 3]

Uses its own cluster name (djbench) and random free loopback ports; removes everything it made.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deploy.lab import cluster  # noqa: E402
from deploy.lab.cluster_plan import ClusterSpec  # noqa: E402

NAME = "djbench"


def free_base(count: int) -> int:
    for _ in range(200):
        base = random.randrange(40000, 50000, 10)
        ok = True
        for k in range(1, count + 1):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", base + k))
                except OSError:
                    ok = False
        if ok:
            return base
    raise SystemExit("no free port block")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="number of up/down cycles")
    parser.add_argument("--nodes", type=int, default=3, help="nodes per cluster")
    args = parser.parse_args()

    cluster.down(NAME, echo=False)
    base = free_base(args.nodes + 1)
    spec = ClusterSpec(name=NAME, nodes=args.nodes, ssh_port=base + args.nodes + 1, app_port_base=base)
    cluster.up(spec=spec, echo=False)  # warm: the node image is built (or found) here, not timed
    cluster.down(NAME, echo=False)
    ups, agains, downs = [], [], []
    try:
        for run in range(args.runs):
            t0 = time.monotonic()
            cluster.up(spec=spec, echo=False)
            t1 = time.monotonic()
            cluster.up(spec=spec, echo=False)
            t2 = time.monotonic()
            cluster.down(NAME, echo=False)
            t3 = time.monotonic()
            ups.append(t1 - t0)
            agains.append(t2 - t1)
            downs.append(t3 - t2)
            print(f"run {run + 1}: up {ups[-1]:.1f}s, second up {agains[-1]:.1f}s, down {downs[-1]:.1f}s", flush=True)
    finally:
        cluster.down(NAME, echo=False)
    result = {"nodes": args.nodes, "runs": args.runs, "up_s": ups, "second_up_s": agains, "down_s": downs,
              "median_up_s": statistics.median(ups), "median_second_up_s": statistics.median(agains),
              "median_down_s": statistics.median(downs)}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "cluster_provision.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"| cluster up ({args.nodes} nodes, swarm formed, image cached) | {result['median_up_s']:.1f} s |")
    print(f"| second `up` (idempotent check) | {result['median_second_up_s']:.1f} s |")
    print(f"| `down` (nodes, volumes, network, registry endpoint, cgroups) | {result['median_down_s']:.1f} s |")


if __name__ == "__main__":
    main()
