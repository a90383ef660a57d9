"""Benchmark: `docker run` to first 200, and `docker stop` with a request in flight (and idle), medians.

Usage: python bench/image_runtime.py [--image djapp:latest] [--runs 7]. Loopback only; containers labelled and removed.
"""

from __future__ import annotations

import argparse
import threading
import time

from image_common import app_env, cleanup, get, median, run_app, wait_200

from deploy.core import engine


def first_200(cli, ref):
    t0 = time.monotonic()
    c, port = run_app(cli, ref, app_env())
    try:
        return wait_200(port) - t0
    finally:
        c.remove(force=True)


def stop_time(cli, ref, in_flight: float):
    c, port = run_app(cli, ref, app_env(DJANGO_TEST_ENDPOINTS="on"))
    try:
        wait_200(port, container=c, all_workers=True)
        result = {}
        thread = None
        if in_flight:
            thread = threading.Thread(target=lambda: result.setdefault(
                "r", get(port, f"/test/slow/?seconds={in_flight}", timeout=30)[0]))
            thread.start()
            while b"slow request started" not in c.logs():
                time.sleep(0.005)
        t0 = time.monotonic()
        c.stop(timeout=10)
        took = time.monotonic() - t0
        code = c.wait(timeout=10)["StatusCode"]
        if thread:
            thread.join(10)
        ok = code == 0 and (not in_flight or result.get("r") == 200)
        return took, ok
    finally:
        c.remove(force=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", default="djapp:latest")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--in-flight", type=float, default=1.0, help="seconds the in-flight request still needs")
    args = ap.parse_args()
    cli = engine.client()
    cleanup(cli)
    firsts = [first_200(cli, args.image) for _ in range(args.runs)]
    print("run to first 200 (s):", " ".join(f"{v:.2f}" for v in firsts), f"-> median {median(firsts):.2f}s", flush=True)
    idle = [stop_time(cli, args.image, 0) for _ in range(args.runs)]
    print("stop, idle (s):", " ".join(f"{v:.2f}" for v, _ in idle), f"-> median {median([v for v, _ in idle]):.2f}s",
          f"exit 0: {sum(ok for _, ok in idle)}/{len(idle)}", flush=True)
    busy = [stop_time(cli, args.image, args.in_flight) for _ in range(args.runs)]
    print(f"stop with a {args.in_flight:g}s request in flight (s):", " ".join(f"{v:.2f}" for v, _ in busy),
          f"-> median {median([v for v, _ in busy]):.2f}s",
          f"request 200 and exit 0: {sum(ok for _, ok in busy)}/{len(busy)}", flush=True)
    cleanup(cli)


if __name__ == "__main__":
    main()
