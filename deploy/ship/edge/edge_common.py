"""Shared by the edge-agent commands: logging, atomic writes, certificate facts, HTTP fetch."""

import datetime
import hashlib
import os
import urllib.error
import urllib.request

UTC = datetime.timezone.utc

def log(level, text):
    print(f"{datetime.datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} edge-agent {level} {text}", flush=True)


def write_atomic(path, data, mode=0o600):
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data if isinstance(data, bytes) else data.encode())
    os.replace(tmp, path)


def digest(text):
    """A configuration's id, as the proxies report it and the deploy expects it (sha256, 16 hex digits)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cert_info(pem):
    from cryptography import x509

    leaf = x509.load_pem_x509_certificates(pem.encode())[0]
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = sorted(n.lower() for n in san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = []
    return {"serial": format(leaf.serial_number, "x"), "names": names,
            "not_before": leaf.not_valid_before_utc.timestamp(), "not_after": leaf.not_valid_after_utc.timestamp()}


def fetch(url, etag="", timeout=5, headers=None):
    """GET ``url``: (body, etag), or (None, etag) when unchanged (304). ``headers`` go along (the proxies' report)."""
    req = urllib.request.Request(url, headers={**(headers or {}), **({"If-None-Match": etag} if etag else {})})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.read().decode(), resp.headers.get("ETag", "")
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return None, etag
        raise
