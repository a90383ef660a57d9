"""The browser harness itself, against a local HTTPS server (no engine): a CA root imported into the browser's
fresh NSS db is really trusted for a host name mapped to 127.0.0.1, a browser without it refuses the same
server, and a screenshot + page source are saved. Marked lab: `inv lab.up` installs Chromium and certutil."""

from __future__ import annotations

import datetime
import http.server
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from browser import chromium, page_text  # noqa: F401 (chromium is a fixture)

pytestmark = pytest.mark.lab
HOST = "harness.djdeploy.test"


def _cert(subject: str, issuer_key, issuer_name, key, ca: bool, san: str | None = None):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                        critical=True)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def https_server(tmp_path_factory):
    """An HTTPS server on 127.0.0.1 with a leaf for HOST from a throwaway CA; yields (port, CA PEM)."""
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert("harness test CA", ca_key, None, ca_key, ca=True)
    leaf = _cert(HOST, ca_key, ca.subject, leaf_key, ca=False, san=HOST)
    d = tmp_path_factory.mktemp("tls")
    (d / "cert.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html><title>harness</title><body><p>trusted page</p></body></html>")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(d / "cert.pem", d / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], ca.public_bytes(serialization.Encoding.PEM).decode()
    server.shutdown()


def test_a_trusted_ca_root_makes_the_page_load_by_its_host_name(https_server, chromium, tmp_path):
    port, ca_pem = https_server
    browser = chromium(host=HOST, ca_pem=ca_pem)
    browser.driver.get(f"https://{HOST}:{port}/")
    assert page_text(browser.driver) == "trusted page"
    saved = browser.save(tmp_path, "shot")
    assert saved[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "trusted page" in saved[1].read_text()


def test_without_the_ca_root_the_same_server_is_refused(https_server, chromium):
    port, _ = https_server
    browser = chromium(host=HOST)
    browser.driver.get(f"https://{HOST}:{port}/")
    assert "trusted page" not in browser.driver.page_source
    assert "ERR_CERT_AUTHORITY_INVALID" in browser.driver.page_source, page_text(browser.driver)[:300]
