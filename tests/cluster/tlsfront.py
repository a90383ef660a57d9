"""A TLS-terminating load balancer for tests, on 127.0.0.1: what sits in front of a TLS_MODE=external cluster.

It serves HTTPS for one host name with a certificate of a throwaway CA (``ca_pem``, for the browser's trust store),
and forwards each request over plain HTTP to one node's loopback port, with ``X-Forwarded-Proto: https`` (the
stack's proxy keeps it only from TRUSTED_LB). Each connection is handshaken in its own thread, so a browser's idle
preconnect cannot stall the others.
"""

from __future__ import annotations

import datetime
import http.client
import http.server
import socket
import ssl
import tempfile
import threading
from pathlib import Path

HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
       "content-length", "x-forwarded-proto", "x-forwarded-for"}


def _cert(subject: str, key, issuer_key=None, issuer=None, san: str | None = None):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=2))
               .add_extension(x509.BasicConstraints(ca=san is None, path_length=None), critical=True))
    if san is None:
        builder = builder.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                        critical=True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def make_certs(host: str, directory: Path) -> tuple[str, Path, Path]:
    """(CA root PEM, leaf chain file, leaf key file) for ``host``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert("djdeploy test load balancer CA", ca_key)
    leaf = _cert(host, key, ca_key, ca.subject, san=host)
    pem = serialization.Encoding.PEM
    chain, keyfile = directory / "chain.pem", directory / "key.pem"
    chain.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    keyfile.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return ca.public_bytes(pem).decode(), chain, keyfile


class _Forward(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30

    def setup(self):
        self.request.settimeout(self.timeout)  # the handshake too: a connection that never speaks is dropped
        self.request = self.server.tls.wrap_socket(self.request, server_side=True)
        super().setup()

    def _forward(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        headers.update({"X-Forwarded-Proto": "https", "X-Forwarded-For": self.client_address[0]})
        conn = http.client.HTTPConnection("127.0.0.1", self.server.upstream, timeout=30)
        try:
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_HEAD = _forward

    def log_message(self, *args):
        pass


class TLSFront:
    """``with TLSFront(host, upstream_port) as lb``: https://host:lb.port/ reaches the upstream's site."""

    def __init__(self, host: str, upstream_port: int):
        self.host, self.dir = host, Path(tempfile.mkdtemp(prefix="djdeploy-lb-"))
        self.ca_pem, chain, key = make_certs(host, self.dir)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Forward)
        self.server.daemon_threads = True
        self.server.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server.tls.load_cert_chain(chain, key)
        self.server.upstream = upstream_port
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def get(self, path: str = "/") -> tuple[int, dict]:
        """(status, headers) of one GET through the front, the certificate verified for its host name."""
        context = ssl.create_default_context(cadata=self.ca_pem)
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=10, context=context)
        conn.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", self.port), timeout=10),
                                        server_hostname=self.host)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        import shutil

        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.dir, ignore_errors=True)
