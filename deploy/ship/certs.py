"""User-provided TLS certificates (TLS_MODE=files): checked before any side effect, one line per problem.

``check`` reads the certificate and key files named in the env file and returns (problems, cert PEM, key PEM).
Each problem names the env key, the file and what is wrong: missing or unreadable, not PEM, a key that does
not match the certificate, a name of DJANGO_ALLOWED_HOSTS the certificate does not cover (wildcards and
Django's leading-dot domains handled), expired or not yet valid. Pure apart from reading the two files.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization


def _read(key: str, path: Path, problems: list) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        problems.append(f"{key} {path}: the file does not exist")
    except OSError as exc:
        problems.append(f"{key} {path}: cannot read it ({exc.strerror or exc})")
    return None


def load_chain(data: bytes) -> list:
    """Every certificate of a PEM bundle, leaf first ([] if none)."""
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        return []


def _spki(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def cert_names(cert) -> tuple[list[str], list]:
    """(DNS names, IP addresses) of the certificate's subjectAltName."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return [n.lower() for n in san.get_values_for_type(x509.DNSName)], san.get_values_for_type(x509.IPAddress)


def _dns_covered(name: str, dns: list[str]) -> bool:
    """RFC 6125: exact, or a ``*.`` wildcard standing for exactly one left-most label."""
    name = name.lower().rstrip(".")
    if name in dns:
        return True
    head, dot, rest = name.partition(".")
    return bool(dot and head and f"*.{rest}" in dns)


def uncovered(hosts: list[str], cert) -> list[str]:
    """The DJANGO_ALLOWED_HOSTS entries ``cert`` does not cover. ``.example.com`` (Django: the domain and its
    subdomains) needs example.com and *.example.com; ``*`` can never be covered."""
    dns, ips = cert_names(cert)
    missing = []
    for host in hosts:
        try:
            if ipaddress.ip_address(host) not in ips:
                missing.append(host)
            continue
        except ValueError:
            pass
        if host == "*":
            missing.append(host)
        elif host.startswith("."):
            if not (_dns_covered(host[1:], dns) and _dns_covered("x" + host, dns)):
                missing.append(host)
        elif not _dns_covered(host, dns):
            missing.append(host)
    return missing


def check(cert_path: Path, key_path: Path, hosts: list[str], now: datetime.datetime | None = None,
          cert_key: str = "TLS_CERT_FILE", key_key: str = "TLS_KEY_FILE") -> tuple[list[str], str, str]:
    """Validate a certificate (PEM, leaf first, chain after it) and its private key for ``hosts``."""
    problems: list[str] = []
    cert_data, key_data = _read(cert_key, cert_path, problems), _read(key_key, key_path, problems)
    if cert_data is None or key_data is None:
        return problems, "", ""
    chain = load_chain(cert_data)
    if not chain:
        return [f"{cert_key} {cert_path}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)"], "", ""
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except (ValueError, TypeError):
        return [f"{key_key} {key_path}: not an unencrypted PEM private key"], "", ""
    leaf = chain[0]
    if _spki(key.public_key()) != _spki(leaf.public_key()):
        problems.append(f"{key_key} {key_path}: the key does not match the certificate in {cert_path}")
    missing = uncovered(hosts, leaf)
    if missing:
        dns, ips = cert_names(leaf)
        named = ", ".join(dns + [str(i) for i in ips]) or "no subjectAltName"
        problems.append(f"{cert_key} {cert_path}: does not cover {', '.join(missing)} of DJANGO_ALLOWED_HOSTS "
                        f"(it names: {named})")
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if leaf.not_valid_after_utc <= now:
        problems.append(f"{cert_key} {cert_path}: expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    elif leaf.not_valid_before_utc > now:
        problems.append(f"{cert_key} {cert_path}: not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    return problems, cert_data.decode("ascii", "replace"), key_data.decode("ascii", "replace")


def acme_problems(hosts: list[str]) -> list[str]:
    """DJANGO_ALLOWED_HOSTS entries an HTTP-01 certificate cannot cover (one line each)."""
    out = []
    for host in hosts:
        try:
            ipaddress.ip_address(host)
            out.append(f"DJANGO_ALLOWED_HOSTS entry {host}: TLS_MODE=acme orders names only, not IP addresses; remove it from "
                       f"DJANGO_ALLOWED_HOSTS or use TLS_MODE=files")
            continue
        except ValueError:
            pass
        if host == "*" or host.startswith("."):
            out.append(f"DJANGO_ALLOWED_HOSTS entry {host}: needs a wildcard certificate, which HTTP-01 cannot get; list the names in "
                       f"DJANGO_ALLOWED_HOSTS or use TLS_MODE=files")
    return out
