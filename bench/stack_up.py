#!/usr/bin/env python3
"""Benchmark the local stack tasks: `inv up` until healthy (image already built), a second `inv up` with
everything running, and `inv --list`. Medians of several runs; results also written to bench/results/.

Runs in a fresh `git clone` of HEAD (a clean tree: other people editing the shared checkout cannot trigger
rebuilds mid-run), on a private compose project (djbench<pid>), a private image repository (djbench<pid>,
built once by the warm-up from the layer cache) and a random free loopback port, so it never touches the
developer's default stack; everything it creates is removed at the end (down --volumes, its images, the clone).

    python3 bench/stack_up.py [--runs 5]

Cold = no containers (`inv down` before each run, database volume kept); fresh = `inv down --volumes` before
each run, so Postgres initialises a new data directory too. A run during which `inv up` had to build (the tree
changed meanwhile, e.g. in a shared checkout) is reported and left out of the median.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(argv, env, check=True, cwd=None):
    started = time.monotonic()
    out = subprocess.run(argv, cwd=cwd or env["BENCH_CWD"], env=env, capture_output=True, text=True, timeout=900)
    seconds = time.monotonic() - started
    if check and out.returncode != 0:
        sys.exit(f"failed: {' '.join(argv)}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return seconds, out


def inv(*args):
    return [sys.executable, "-m", "invoke", *args]


def series(label, runs, before, action, env):
    kept, skipped = [], 0
    for _ in range(runs):
        if before:
            timed(inv(*before), env)
        seconds, out = timed(inv(*action), env)
        if "image: building" in out.stdout:
            skipped += 1
            continue
        kept.append(seconds)
    med = statistics.median(kept) if kept else float("nan")
    print(f"{label:<46} median {med:6.2f} s  (runs: {', '.join(f'{s:.2f}' for s in kept)}"
          f"{f'; {skipped} left out: built' if skipped else ''})", flush=True)
    return {"median": med, "runs": kept, "left_out_built": skipped}


def toolkit_import_ms(env, runs=7) -> float:
    """What the toolkit itself adds to `inv --list`: import self-time of tasks.py and deploy.* (the rest is invoke)."""
    totals = []
    for _ in range(runs):
        _, out = timed([sys.executable, "-X", "importtime", "-c", "import tasks"], env)
        own = 0
        for line in out.stderr.splitlines():
            parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
            if len(parts) == 3 and parts[0].isdigit() and (parts[2] == "tasks" or parts[2].startswith("deploy")):
                own += int(parts[0])
        totals.append(own / 1000)
    return statistics.median(totals)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    project = f"djbench{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix="djbench-"))
    clone = work / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    env = {**os.environ, "COMPOSE_PROJECT_NAME": project, "APP_PORT": str(free_port()), "APP_IMAGE": project,
           "XDG_CACHE_HOME": str(work / "cache"), "PYTHONUNBUFFERED": "1", "BENCH_CWD": str(clone)}
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.node(),
               "cpus": os.cpu_count(), "runs": args.runs, "load_before": os.getloadavg()}
    try:
        print(f"warm-up: inv up on project {project} (builds the image if the tree needs it)", flush=True)
        warm, out = timed(inv("up"), env)
        print(f"  {warm:.1f} s; {out.stdout.strip().splitlines()[-1]}", flush=True)
        results["up_cold"] = series("inv up, no containers (volume kept)", args.runs, ["down"], ["up"], env)
        results["up_fresh"] = series("inv up, no containers, new database", args.runs,
                                     ["down", "--volumes", "--yes"], ["up"], env)
        results["up_again"] = series("inv up, everything already running", args.runs, None, ["up"], env)
        results["list"] = series("inv --list", args.runs * 2, None, ["--list"], env)
        base = [timed([sys.executable, "-c", "import invoke"], env)[0] for _ in range(args.runs * 2)]
        results["import_invoke"] = {"median": statistics.median(base), "runs": base}
        label = 'python -c "import invoke" (floor of --list)'
        print(f"{label:<46} median {statistics.median(base):6.2f} s", flush=True)
        results["toolkit_import_ms"] = toolkit_import_ms(env)
        print(f"{'own modules at inv --list (deploy.*, tasks)':<46} median {results['toolkit_import_ms']:6.1f} ms "
              "(python -X importtime self time)", flush=True)
        results["load_after"] = os.getloadavg()
        print(f"load average before/after: {results['load_before'][0]:.1f} / {results['load_after'][0]:.1f}")
    finally:
        timed(inv("down", "--volumes", "--yes"), env, check=False)
        images = subprocess.run(["docker", "image", "ls", "--quiet", project], capture_output=True, text=True).stdout
        for image_id in sorted(set(images.split())):
            subprocess.run(["docker", "image", "rm", "--force", image_id], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "stack_up.json").write_text(json.dumps(results, indent=1))
    print(f"results: {out_dir / 'stack_up.json'}")


if __name__ == "__main__":
    main()
