"""Groundwork for a proxy image change with host ports and 0 failed requests (issue 13, not shipped yet).

Swarm cannot run two tasks that publish the same host-mode port on one node, so today a proxy image change on one
node is stop-first: a gap. A process on the host network has no such limit: two HAProxy processes can bind the
same port (SO_REUSEPORT, HAProxy's default on Linux), so a tiny TCP relay on the host network could be replaced
start-first and hand the port over. This measures that handover alone: an origin (HAProxy answering 200) behind a
TCP-mode relay on 127.0.0.1, new connections at RATE per second (no keep-alive), and HANDOVERS times: start a new
relay, wait 2 s, send the old one SIGNAL (USR1 = HAProxy's soft stop: close the listeners, finish the
connections; TERM = hard stop, for comparison), wait for it to exit, remove it.

    python3 bench/relay_handover.py --rate 600 --handovers 8 --signal USR1

Containers: labelled djdeploy.test=relay, host network, ports 9100 and 9443 on 127.0.0.1 only; removed at the end.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import LoadGenerator  # noqa: E402

IMAGE = "haproxy:3.0-trixie"
DEFAULTS = "global\n    maxconn 4096\ndefaults\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n"
ORIGIN = DEFAULTS + ("frontend origin\n    mode http\n    bind 127.0.0.1:9100\n"
                     "    http-request return status 200 content-type text/plain string ok hdr X-App-Version v1\n")
RELAY = DEFAULTS + "frontend relay\n    mode tcp\n    bind 127.0.0.1:9443\n    default_backend o\nbackend o\n" \
                   "    mode tcp\n    server o 127.0.0.1:9100\n"


def docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True)


def start(name: str, cfg_dir: str, cfg: str) -> None:
    out = docker("run", "-d", "--name", name, "--label", "djdeploy.test=relay", "--network", "host", "-v",
                 f"{cfg_dir}:/c:ro", IMAGE, "haproxy", "-f", f"/c/{cfg}")
    if out.returncode:
        sys.exit(f"error: docker run {name}: {out.stderr.strip()}")


def wait_exit(name: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() != "true":
            return
        time.sleep(0.1)


def handovers(cfg_dir: str, count: int, signal: str) -> None:
    current, spare = "relay-a", "relay-b"
    for _ in range(count):
        start(spare, cfg_dir, "relay.cfg")
        time.sleep(2)
        docker("kill", "-s", signal, current)
        wait_exit(current)
        docker("rm", "-f", current)
        current, spare = spare, current
        time.sleep(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=600, help="new connections per second")
    ap.add_argument("--handovers", type=int, default=8, help="relay replacements under load")
    ap.add_argument("--signal", default="USR1", help="what the old relay gets: USR1 (soft stop) or TERM")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        Path(d).chmod(0o755)   # the image runs HAProxy as its own user
        Path(d, "origin.cfg").write_text(ORIGIN)
        Path(d, "relay.cfg").write_text(RELAY)
        try:
            start("relay-origin", d, "origin.cfg")
            start("relay-a", d, "relay.cfg")
            time.sleep(1)
            if not docker("ps", "-q", "--filter", "name=^relay-a$").stdout.strip():
                sys.exit("error: the first relay did not start: " + docker("logs", "relay-a").stderr[-500:])
            gen = LoadGenerator(9443, "/", rate=a.rate, seconds=a.handovers * 6 + 30, keepalive=False).start()
            time.sleep(2)
            handovers(d, a.handovers, a.signal)
            stats = gen.stop()
            print(f"signal {a.signal}, {a.handovers} handovers: {stats.summary()}")
        finally:
            docker("rm", "-f", "relay-origin", "relay-a", "relay-b")


if __name__ == "__main__":
    main()
