"""Benchmark (issue 9): requests/s over HTTPS with keep-alive vs plain HTTP through the SAME proxy, in one run.

One edge proxy (the deploy's rendered HAProxy config, TLS_MODE=files, with the certificate installed by its own
certsync program from a certs container) gets one extra plain-HTTP frontend to the same backend; one app
container (DATABASE_URL='') behind it. wrk (2 threads, HTTP/1.1 keep-alive) measures a path on both, alternating,
for --rounds rounds; the medians and their ratio are printed (target: HTTPS >= 0.8 x HTTP). The default path is
the page's hashed CSS file (uWSGI serves it with a Content-Length): a dynamic page reaches HTTP/1.1 clients through
this proxy as close-delimited (`option http-server-close`), i.e. one connection per request, which measures TLS
handshakes rather than keep-alive (HTTP/2 clients, i.e. browsers, keep their connection either way).

Usage: python bench/https_throughput.py [--image djapp:latest] [--rounds 3] [--seconds 10] [--connections 16]
Only 127.0.0.1 is targeted; everything created is labelled djdeploy.bench=https and removed.
"""

from __future__ import annotations

import argparse
import datetime
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deploy.ship import edge_cfg, edge_image  # noqa: E402

NAME = "bench.djdeploy.test"
LABEL = "djdeploy.bench=https"


def sh(*argv, check=True):
    return subprocess.run(list(argv), capture_output=True, text=True, check=check)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed(directory: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(NAME)]), critical=False).sign(key, hashes.SHA256()))
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    for f in directory.iterdir():
        f.chmod(0o644)


def proxy_config() -> str:
    cfg = SimpleNamespace(stack_name="bench", tls_mode="files", tls=True, https_port=443, hsts_max_age=3600,
                          hsts_include_subdomains=False, hsts_preload=False, cert_sync_interval=2, replicas=1,
                          health_host=NAME, trusted_lb="")
    return edge_cfg.render(cfg) + ("\nfrontend plain\n    bind :8090\n    http-request set-header X-Forwarded-Proto http\n"
                                   "    default_backend app\n")


def wrk(url: str, seconds: int, connections: int) -> tuple[float, str]:
    """(requests/s, socket errors). A non-2xx answer aborts; "read" socket errors are connections the server
    closed after an answer (counted by wrk, reported, not failures)."""
    out = sh("wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-H", f"Host: {NAME}", url).stdout
    if re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        raise SystemExit(f"non-2xx answers during the run of {url}\n{out}")
    errors = re.search(r"Socket errors: (.+)", out)
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), errors.group(1) if errors else ""


def wait(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sh("curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "-H", f"Host: {NAME}", url,
              check=False).stdout == "200":
            return
        time.sleep(0.3)
    raise SystemExit(f"{url} did not answer 200 within {timeout:g}s")


def start(image: str, edge: str, tmp: Path) -> tuple[int, int]:
    net = f"djbench-https-{secrets.token_hex(3)}"
    sh("docker", "network", "create", "--label", LABEL, net)
    sh("docker", "run", "-d", "--label", LABEL, "--network", net, "--network-alias", "tasks.app",
       "-e", "DATABASE_URL=", "-e", f"DJANGO_SECRET_KEY={secrets.token_urlsafe(50)}",
       "-e", f"DJANGO_ALLOWED_HOSTS={NAME}", image)
    sh("docker", "run", "-d", "--label", LABEL, "--network", net, "--network-alias", "tasks.certs",
       "-v", f"{tmp}:/in:ro", edge, "edge-agent", "certs", "--mode", "files", "--cert-file", "/in/cert.pem",
       "--key-file", "/in/key.pem")
    plain, tls = free_port(), free_port()
    sh("docker", "run", "-d", "--label", LABEL, "--network", net, "-p", f"127.0.0.1:{plain}:8090",
       "-p", f"127.0.0.1:{tls}:8443", "-v", f"{tmp}/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro", edge)
    wait(f"http://127.0.0.1:{plain}/health/")
    wait(f"https://127.0.0.1:{tls}/health/")
    return plain, tls


def proxy_logs() -> None:
    """The proxy's last log lines (why it answered non-2xx: a server marked DOWN, a queue timeout...)."""
    for cid in sh("docker", "ps", "-aq", "--filter", f"label={LABEL}").stdout.split():
        out = sh("docker", "logs", "--tail", "40", cid, check=False)
        print(f"--- logs {cid}\n{out.stdout[-4000:]}{out.stderr[-4000:]}", file=sys.stderr)


def cleanup() -> None:
    ids = sh("docker", "ps", "-aq", "--filter", f"label={LABEL}").stdout.split()
    if ids:
        sh("docker", "rm", "-f", *ids, check=False)
    for net in sh("docker", "network", "ls", "-q", "--filter", f"label={LABEL}").stdout.split():
        sh("docker", "network", "rm", net, check=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default="djapp:latest", help="the app image")
    ap.add_argument("--proxy-image", default="haproxy:3.0-trixie", help="PROXY_IMAGE the edge image is built FROM")
    ap.add_argument("--rounds", type=int, default=3, help="alternating HTTP/HTTPS rounds")
    ap.add_argument("--seconds", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=16, help="wrk connections (kept alive)")
    ap.add_argument("--path", default="static", help="the path measured; 'static': the page's hashed CSS file")
    a = ap.parse_args()
    spec = SimpleNamespace(edge_image="djedge-bench", proxy_image=a.proxy_image)
    edge = edge_image.build(spec, edge_image.recipe_tag(a.proxy_image), out=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="djbench-https-") as tmpdir:
        tmp = Path(tmpdir)
        Path(tmp).chmod(0o755)
        self_signed(tmp)
        (tmp / "haproxy.cfg").write_text(proxy_config())
        (tmp / "haproxy.cfg").chmod(0o644)
        try:
            plain, tls = start(a.image, edge, tmp)
            if a.path == "static":
                page = sh("curl", "-s", "-H", f"Host: {NAME}", f"http://127.0.0.1:{plain}/").stdout
                a.path = re.search(r'/static/[^"]+\.css', page).group(0)
            http_rps, https_rps = [], []
            for _ in range(a.rounds):
                (h, h_err), (t, t_err) = (wrk(f"http://127.0.0.1:{plain}{a.path}", a.seconds, a.connections),
                                          wrk(f"https://127.0.0.1:{tls}{a.path}", a.seconds, a.connections))
                http_rps.append(h)
                https_rps.append(t)
                print(f"round: http {h:.0f}/s ({h_err or 'no socket errors'}), https {t:.0f}/s "
                      f"({t_err or 'no socket errors'})", flush=True)
        except SystemExit:
            proxy_logs()
            raise
        finally:
            cleanup()
    h, s = statistics.median(http_rps), statistics.median(https_rps)
    print(f"median requests/s of {a.path}, keep-alive, {a.connections} connections, {a.rounds}x{a.seconds}s: "
          f"HTTP {h:.0f}, HTTPS {s:.0f}, ratio {s / h:.2f} (target >= 0.8)")


if __name__ == "__main__":
    main()
