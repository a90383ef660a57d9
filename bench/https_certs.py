"""Benchmark (issue 9): time to a first certificate on a fresh lab deploy, and the time of a renewal.

A fresh stack (its own name, free ports, its own Pebble with --validity-second certificates) is deployed with
TLS_MODE=acme. Reported: the whole deploy; the time to a first certificate (from the deploy step that creates db,
proxy and certs to the end of the step that waits for a valid certificate: the certs task starting, the account,
the order, HTTP-01 through the proxy, issuance); the first order alone (certs log); and for each of --renewals renewals: the order-to-certificate
time in the certs service's log and the time until a new connection is served the new serial. Runs --rounds fresh
deploys. Only 127.0.0.1 is targeted; the stack, its secrets/configs/volumes and the CA are removed.

Usage: python bench/https_certs.py [--tag TAG_IN_REGISTRY] [--rounds 2] [--renewals 1] [--validity 60]
"""

from __future__ import annotations

import argparse
import datetime
import io
import re
import secrets
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from loadgen import serial_of  # noqa: E402

HOST = "djlab.test"


def sh(*argv, check=False, timeout=120):
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def runner():
    from invoke import Context

    from deploy.core.runner import Runner

    return Runner(ctx=Context(), echo=False)


def served(port: int, ca: str) -> str:
    ctx = ssl.create_default_context(cadata=ca)
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname=HOST) as s:
        return serial_of(s)


def log_times(stack: str) -> list[tuple[str, float]]:
    """(event, epoch) of the certs service's 'ordering' and 'new certificate' lines."""
    out = sh("docker", "service", "logs", "--raw", f"{stack}_certs", timeout=30)
    events = []
    for line in (out.stdout + out.stderr).splitlines():
        m = re.match(r"(\S+Z) edge-agent INFO (ordering|new certificate)", line)
        if m:
            when = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
            events.append((m.group(2), when.timestamp()))
    return events


def remove(stack: str) -> None:
    sh("docker", "stack", "rm", stack)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and sh("docker", "network", "ls", "-q", "--filter", f"name={stack}_").stdout.split():
        time.sleep(0.5)
    for kind in ("secret", "config"):
        ids = sh("docker", kind, "ls", "-q", "--filter", f"name={stack}_").stdout.split()
        if ids:
            sh("docker", kind, "rm", *ids)
    for volume in ("pgdata", "certs"):
        sh("docker", "volume", "rm", f"{stack}_{volume}")
    sh("rm", "-rf", f"/var/lib/djdeploy/{stack}")


def one_round(tag: str, validity: int, renewals: int) -> dict:
    from deploy.lab import acme, acme_env, deploy_env
    from deploy.ship import config, executor

    stack = "djbench" + secrets.token_hex(3)
    port, https_port = free_port(), free_port()
    spec = acme.AcmeSpec(prefix=stack, labels=(("djdeploy.bench", "https"),), http_port=port, validity=validity)
    result = {}
    with tempfile.TemporaryDirectory(prefix="djbench-certs-") as tmp:
        try:
            acme.ensure(runner(), spec, say=lambda line: None)
            tls = acme_env.connect(runner(), spec, Path(tmp) / "acme")
            deploy_env.write_lab_env(Path(tmp), name="lab", stack=stack, port=port, https_port=https_port, tls=tls)
            ca = (Path(tmp) / "acme" / "ca-root.pem").read_text()
            outcome = executor.deploy(config.load("lab", env_dir=Path(tmp), environ={}), tag=tag, build=False,
                                      out=io.StringIO())
            whats = [r.step.what for r in outcome.records]
            first = whats.index("deploy db and proxy and certs")
            last = next(i for i, w in enumerate(whats) if w.startswith(f"until {stack}_certs serves"))
            events = log_times(stack)
            result.update(deploy=outcome.seconds,
                          first_certificate=sum(r.seconds for r in outcome.records[first:last + 1]),
                          first_order=events[1][1] - events[0][1], renewal=[], served_after=[])
            for _ in range(renewals):
                serial, before = served(https_port, ca), len(log_times(stack))
                while len(log_times(stack)) < before + 2:
                    time.sleep(0.5)
                events = log_times(stack)[-2:]
                result["renewal"].append(events[1][1] - events[0][1])
                while served(https_port, ca) == serial:
                    time.sleep(0.2)
                result["served_after"].append(time.time() - events[0][1])
        finally:
            remove(stack)
            acme_env.disconnect(runner(), spec)
            acme.remove(runner(), spec)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tag", required=True, help="an app image tag already in the lab registry")
    ap.add_argument("--rounds", type=int, default=2, help="fresh deploys")
    ap.add_argument("--renewals", type=int, default=1, help="renewals observed per deploy")
    ap.add_argument("--validity", type=int, default=60, help="Pebble certificate lifetime, seconds")
    a = ap.parse_args()
    rounds = [one_round(a.tag, a.validity, a.renewals) for _ in range(a.rounds)]
    for r in rounds:
        print("round:", {k: (round(v, 1) if isinstance(v, float) else [round(x, 1) for x in v]) for k, v in r.items()})
    med = statistics.median
    print(f"median over {a.rounds} fresh deploys: deploy {med(r['deploy'] for r in rounds):.1f}s, "
          f"first certificate {med(r['first_certificate'] for r in rounds):.1f}s after the base deploy started (the "
          f"order itself {med(r['first_order'] for r in rounds):.1f}s), renewal (order to certificate, "
          f"1 s log resolution) {med(x for r in rounds for x in r['renewal']):.1f}s, new serial served "
          f"{med(x for r in rounds for x in r['served_after']):.1f}s after the renewal started")


if __name__ == "__main__":
    main()
