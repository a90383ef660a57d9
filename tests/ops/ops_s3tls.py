"""An https:// S3 store for the off-site tests: the lab's moto stand-in (plain HTTP) behind a TLS front.

The front is the lab's HAProxy stand-in (haproxy:3.0-trixie, already built by `inv lab.up`) terminating TLS with a
leaf certificate for ``s3-tls`` signed by a throwaway test CA (so the client's verification is real: the test CA is
trusted through BACKUP_S3_CA_FILE, any other CA is not), and passing the bytes on to moto (``mode tcp``) on the
store's own network. The name has no dot on purpose: moto takes a dotted Host's first label for a bucket name.
The front runs as the test's own uid (it reads its files from a private temporary directory), read-only, without
capabilities, labelled djdeploy.test=ops; ``remove`` deletes it.
"""

from __future__ import annotations

import datetime
import os
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

IMAGE = "haproxy:3.0-trixie"
ALIAS = "s3-tls"
PORT = 8443
ENDPOINT = f"https://{ALIAS}:{PORT}"
CONFIG = f"""global
    maxconn 200
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend tls
    bind :{PORT} ssl crt /etc/s3-tls/s3.pem
    default_backend moto
backend moto
    server moto s3:5000
"""


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key, issuer: x509.Name, issuer_key, ca: bool):
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=2))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
    else:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(ALIAS)]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def pem(cert) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_ca(label: str):
    """(CA certificate, its key): a throwaway root."""
    key = ec.generate_private_key(ec.SECP256R1())
    return _cert(f"djdeploy {label} test CA", key, _name(f"djdeploy {label} test CA"), key, ca=True), key


def write_files(directory: Path, ca, ca_key) -> Path:
    """haproxy.cfg and s3.pem (the leaf for ``s3-tls`` signed by ``ca``, then its key) in ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = _cert(ALIAS, key, ca.subject, ca_key, ca=False)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "haproxy.cfg").write_text(CONFIG)
    (directory / "s3.pem").write_text(pem(leaf) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode())
    return directory


def run_argv(name: str, network: str, directory: Path, uid: int, gid: int) -> list:
    return ["docker", "run", "--detach", "--name", name, "--network", network, "--label", "djdeploy.test=ops",
            "--user", f"{uid}:{gid}", "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
            "--memory", "64m", "--volume", f"{directory}:/etc/s3-tls:ro", IMAGE,
            "haproxy", "-W", "-db", "-f", "/etc/s3-tls/haproxy.cfg"]


def docker(*args, check=True):
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60, check=check)


def start(name: str, store_network: str, directory: Path, ca, ca_key) -> None:
    """The front on the store's network (where moto answers as ``s3``); attach it elsewhere with ``connect``."""
    write_files(directory, ca, ca_key)
    docker(*run_argv(name, store_network, directory, os.getuid(), os.getgid())[1:])


def connect(name: str, network: str) -> None:
    docker("network", "connect", "--alias", ALIAS, network, name)


def disconnect(name: str, network: str) -> None:
    docker("network", "disconnect", "--force", network, name, check=False)


def logs(name: str) -> str:
    out = docker("logs", "--tail", "30", name, check=False)
    return out.stdout + out.stderr


def remove(name: str) -> None:
    docker("rm", "--force", name, check=False)
