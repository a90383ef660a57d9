"""A small bounded HTTP load generator for zero-downtime checks (127.0.0.1 only).

Threads send GET requests at a target total rate until ``seconds`` pass or ``stop()`` is called
(it always stops by itself). It counts failures (no HTTP answer), non-2xx answers, and the
X-App-Version values seen in order of first appearance.

    python bench/loadgen.py --port 8080 --rate 60 --seconds 20

Over HTTPS (``tls``: an ssl.SSLContext; ``host_header`` is also the SNI name the certificate is verified for),
it also records the serial of the certificate each new connection saw (``serials``, in order of appearance).
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Stats:
    sent: int = 0
    ok: int = 0
    failed: int = 0          # no HTTP answer (refused, reset, timeout)
    non2xx: int = 0
    versions: Counter = field(default_factory=Counter)
    order: list = field(default_factory=list)  # versions in order of first appearance
    errors: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    serials: list = field(default_factory=list)  # TLS: certificate serials seen, in order of first appearance
    slowest: float = 0.0     # seconds of the slowest answered request (a proxy's retry after a crash shows here)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        return (f"sent={self.sent} ok={self.ok} failed={self.failed} non2xx={self.non2xx} rate={self.rate:.1f}/s "
                f"slowest={self.slowest:.2f}s versions={dict(self.versions)} order={self.order} "
                f"errors={dict(self.errors)}"
                + (f" serials={self.serials}" if self.serials else ""))


class _TLSConnection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 with SNI (and verification) for another name."""

    def __init__(self, port: int, name: str, context: ssl.SSLContext, timeout: float):
        super().__init__("127.0.0.1", port, timeout=timeout, context=context)
        self._name, self._ctx = name, context

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._ctx.wrap_socket(self.sock, server_hostname=self._name)


def serial_of(sock) -> str:
    from cryptography import x509

    return format(x509.load_der_x509_certificate(sock.getpeercert(binary_form=True)).serial_number, "x")


class LoadGenerator:
    def __init__(self, port: int, path: str = "/", rate: float = 60.0, seconds: float = 60.0, threads: int = 8,
                 keepalive: bool = False, host_header: str = "127.0.0.1", timeout: float = 10.0,
                 tls: ssl.SSLContext | None = None):
        self.port, self.path, self.rate, self.seconds = port, path, rate, seconds
        self.threads, self.keepalive, self.host_header, self.timeout = threads, keepalive, host_header, timeout
        self.tls = tls
        self.stats = Stats()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._started = 0.0

    def _record(self, status: int | None, version: str | None, error: str | None, seconds: float = 0.0) -> None:
        with self._lock:
            s = self.stats
            s.sent += 1
            if status is not None:
                s.slowest = max(s.slowest, seconds)
            if status is None:
                s.failed += 1
                s.errors[error or "?"] += 1
            elif 200 <= status < 300:
                s.ok += 1
            else:
                s.non2xx += 1
                s.errors[f"HTTP {status}"] += 1
            if version:
                if version not in s.versions:
                    s.order.append(version)
                s.versions[version] += 1

    def _worker(self, index: int) -> None:
        interval = self.threads / self.rate
        next_at = self._started + index * interval / self.threads
        conn = None
        deadline = self._started + self.seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            delay = next_at - time.monotonic()
            if delay > 0:
                if self._stop.wait(delay):
                    break
            next_at += interval
            began = time.monotonic()
            try:
                if conn is None:
                    conn = self._connect()
                conn.request("GET", self.path, headers={"Host": self.host_header,
                                                        "Connection": "keep-alive" if self.keepalive else "close"})
                resp = conn.getresponse()
                resp.read()
                self._record(resp.status, resp.getheader("X-App-Version"), None, time.monotonic() - began)
                if not self.keepalive or resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                self._record(None, None, type(exc).__name__)
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _connect(self):
        if self.tls is None:
            return http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        name = self.host_header.rsplit(":", 1)[0]
        conn = _TLSConnection(self.port, name, self.tls, self.timeout)
        conn.connect()
        serial = serial_of(conn.sock)
        with self._lock:
            if serial not in self.stats.serials:
                self.stats.serials.append(serial)
        return conn

    def start(self) -> "LoadGenerator":
        self._started = time.monotonic()
        self._workers = [threading.Thread(target=self._worker, args=(i,), daemon=True) for i in range(self.threads)]
        for t in self._workers:
            t.start()
        return self

    def stop(self) -> Stats:
        self._stop.set()
        for t in self._workers:
            t.join(self.timeout + 5)
        self.stats.seconds = time.monotonic() - self._started
        return self.stats

    def __enter__(self) -> "LoadGenerator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":  # pragma: no cover
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    ap.add_argument("--path", default="/health/", help="request path")
    ap.add_argument("--rate", type=float, default=60.0, help="requests per second (total)")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long to run")
    ap.add_argument("--keepalive", action="store_true", help="reuse connections")
    a = ap.parse_args()
    gen = LoadGenerator(a.port, a.path, a.rate, a.seconds, keepalive=a.keepalive).start()
    time.sleep(a.seconds)
    print(gen.stop().summary())
