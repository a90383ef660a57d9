"""Benchmark: lab provisioning, warm (median of several `inv lab.up` on the provisioned lab) and cold
(an isolated lab: new LAB_DIR, own ports, the Debian base rebuilt by debootstrap under a temporary name;
optionally every stand-in rebuilt with --no-cache under a temporary tag). Everything cold is removed after.

    python bench/lab_provision.py [--warm-runs 7] [--cold] [--cold-standins]

It never takes the default lab down; the engine and the swarm are shared and left as they are.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def inv(*args, env=None, timeout=900):
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, text=True, capture_output=True,
                            env={**os.environ, **(env or {})}, timeout=timeout)
    seconds = time.monotonic() - started
    if result.returncode:
        raise SystemExit(f"inv {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return seconds, result.stdout


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def warm(runs):
    inv("lab.up", "--quiet")  # make sure it is up; not timed
    times = [inv("lab.up", "--quiet")[0] for _ in range(runs)]
    return {"runs": runs, "median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
            "max_s": round(max(times), 3)}


def cold():
    work = Path(tempfile.mkdtemp(prefix="djdeploy-lab-bench-"))
    env = {"DJDEPLOY_LAB_DIR": str(work / "lab"), "DJDEPLOY_LAB_REGISTRY_PORT": str(free_port()),
           "DJDEPLOY_LAB_SSH_PORT": str(free_port()),
           "DJDEPLOY_LAB_BASE_IMAGES": "djdeploy-bench/debian:trixie-slim"}
    try:
        seconds, out = inv("lab.up", env=env)
        second, _ = inv("lab.up", "--quiet", env=env)
        size = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", "djdeploy-bench/debian:trixie-slim"],
                              capture_output=True, text=True).stdout.strip()
    finally:
        inv("lab.down", "--yes", env=env)
        os.rmdir(work)
    built = [line for line in out.splitlines() if "built in" in line or line.startswith("lab up")]
    return {"seconds": round(seconds, 1), "second_run_s": round(second, 2), "base_image_mb": round(int(size) / 1e6, 1),
            "included": "engine found answering (no install, no dockerd start); debootstrap + slim + import of the "
                        "base under a temporary name; registry + sshd started on new ports; swarm found active",
            "log": built}


def cold_standins():
    from deploy.lab import standins

    results = {}
    for item in standins.stand_ins():
        tag = f"djdeploy-bench/{item.name.replace(':', '-')}:cold"
        started = time.monotonic()
        subprocess.run(["docker", "build", "-q", "--no-cache", "--label", "djdeploy.test=lab-bench", "-t", tag,
                        str(item.directory)], check=True, capture_output=True)
        results[item.name] = round(time.monotonic() - started, 1)
        subprocess.run(["docker", "image", "rm", tag], check=True, capture_output=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm-runs", type=int, default=7, help="how many warm `inv lab.up` runs (median)")
    parser.add_argument("--cold", action="store_true", help="also measure one cold provisioning (isolated lab)")
    parser.add_argument("--cold-standins", action="store_true", help="also time every stand-in built --no-cache")
    args = parser.parse_args()
    report = {"warm": warm(args.warm_runs)}
    if args.cold:
        report["cold"] = cold()
    if args.cold_standins:
        report["cold_standins_s"] = cold_standins()
    print(json.dumps(report, indent=2))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "lab_provision.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
