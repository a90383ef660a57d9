"""edge-agent sync / prepare: keep the running HAProxy's certificate current through its admin socket."""

import datetime
import os
import socket
import time

from edge_common import UTC, cert_info, fetch, log, write_atomic


def admin(sock_path, command):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(sock_path)
        s.sendall(command.encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def install(args, bundle):
    """Install ``bundle`` into the running HAProxy (a transaction on the admin socket), then on disk."""
    out = admin(args.socket, f"set ssl cert {args.cert} <<\n{bundle.strip()}\n\n")
    if "Transaction" not in out:
        raise RuntimeError(f"set ssl cert: {out.strip()}")
    out = admin(args.socket, f"commit ssl cert {args.cert}\n")
    if "Success" not in out:
        raise RuntimeError(f"commit ssl cert: {out.strip()}")
    write_atomic(args.cert, bundle)


def run_sync(args):
    etag, serial = "", ""
    while True:
        try:
            bundle, new_etag = fetch(args.source, etag)
            if bundle is not None and new_etag != etag:
                install(args, bundle)
                etag, serial = new_etag, cert_info(bundle)["serial"]
                log("INFO", f"certsync: installed certificate serial={serial} into the running proxy")
        except Exception as exc:  # noqa: BLE001 - keep serving the current certificate, try again
            log("WARNING", f"certsync: {type(exc).__name__}: {exc} (serving serial={serial or 'placeholder'})")
        time.sleep(args.interval)


def placeholder():
    """A self-signed certificate for the few seconds before the real one is installed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "djdeploy placeholder")])
    now = datetime.datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode() + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def run_prepare(args):
    os.makedirs(os.path.dirname(args.cert), mode=0o700, exist_ok=True)
    try:
        bundle, _ = fetch(args.source, timeout=2)
        log("INFO", f"prepare: starting with certificate serial={cert_info(bundle)['serial']}")
    except Exception as exc:  # noqa: BLE001
        bundle = placeholder()
        log("INFO", f"prepare: no certificate from {args.source} yet ({type(exc).__name__}); starting with a placeholder")
    write_atomic(args.cert, bundle)
