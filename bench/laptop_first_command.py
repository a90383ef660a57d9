#!/usr/bin/env python3
"""Benchmark the README's first command on a simulated laptop with internet (issue 14), cold and warm.

The laptop is tests/lab/laptop.py's: a nested Docker engine whose Docker Hub is a registry mirror pre-loaded with
the official names (debian:trixie-slim, postgres:17-trixie), and a new NON-ROOT user with its own checkout and a
virtualenv of the system Python, running the command against it (DOCKER_HOST) in the nested machine's network
namespace. Everything it makes is removed at the end.

    cold   a new engine: the command pulls both images and builds the app image (apt + pip in the build)
    warm   the same command again after `inv down` (images and the app image present)
    again  the same command again with the stack still up

    python3 bench/laptop_first_command.py
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "lab")]

from laptop import FIRST_COMMAND, LaptopUser, NestedLaptop, user_name  # noqa: E402


def main() -> None:
    from deploy.core.engine import client

    cli = client()
    laptop = NestedLaptop(cli, f"djbench-laptop{os.getpid()}", Path(tempfile.mkdtemp(prefix="djbench-laptop-")))
    user = None
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.platform(),
              "cpus": os.cpu_count(), "command": FIRST_COMMAND}
    try:
        started = time.monotonic()
        laptop.start()
        report["nested_engine_and_mirror_s"] = round(time.monotonic() - started, 1)
        user = LaptopUser(user_name("bch"), docker_group=False)
        user.make_checkout()
        user.make_venv()
        env = user.env(DOCKER_HOST=laptop.DOCKER_HOST)

        def timed(what: str, script: str) -> None:
            out = user.run(script, env=env, netns_pid=laptop.netns_pid, timeout=1200)
            if out.returncode != 0:
                sys.exit(f"{what} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
            report[f"{what}_s"] = round(out.seconds, 1)
            if what == "cold":
                report["cold_steps"] = [ln for ln in out.stdout.splitlines()
                                        if ln.startswith(("pulled ", "lab up in", "image: ", "ready: "))]

        timed("cold", FIRST_COMMAND)
        user.run("inv down", env=env, netns_pid=laptop.netns_pid, timeout=300)
        timed("warm", FIRST_COMMAND)
        timed("again", FIRST_COMMAND)
        report["load_avg"] = os.getloadavg()
    finally:
        if user is not None:
            user.remove()
        laptop.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
