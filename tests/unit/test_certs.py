"""deploy.ship.certs and the TLS keys of deploy.ship.config: every certificate and TLS config error verbatim.
Certificates are made here with `cryptography` (a CA, leaves with chosen names and dates)."""

import datetime

import pytest

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from deploy.core.errors import ConfigError
from deploy.ship import certs, config
from test_config_deploy import write

NOW = datetime.datetime(2026, 12, 1, 10, 0, tzinfo=datetime.timezone.utc)


def pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_cert(names=("shop.example.com",), days=30, start_days=-1, key=None, ips=()):
    key = key or ec.generate_private_key(ec.SECP256R1())
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    san = [x509.DNSName(n) for n in names] + [x509.IPAddress(__import__("ipaddress").ip_address(i)) for i in ips]
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (names or ("x",))[0])]))
               .issuer_name(ca).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW + datetime.timedelta(days=start_days))
               .not_valid_after(NOW + datetime.timedelta(days=start_days + days)))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM), pem_key(key)


def files(tmp_path, cert: bytes, key: bytes):
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    return tmp_path / "cert.pem", tmp_path / "key.pem"


def check(tmp_path, hosts, **kw):
    cert, key = make_cert(**kw)
    return certs.check(*files(tmp_path, cert, key), hosts, now=NOW)[0]


def test_a_good_certificate_and_key_pass_and_are_returned(tmp_path):
    cert, key = make_cert(("shop.example.com", "www.example.com"))
    problems, cert_text, key_text = certs.check(*files(tmp_path, cert, key), ["shop.example.com", "www.example.com"],
                                                now=NOW)
    assert (problems, cert_text, key_text) == ([], cert.decode(), key.decode())


def test_missing_and_unreadable_files(tmp_path):
    assert certs.check(tmp_path / "nope.pem", tmp_path / "nokey.pem", ["a.example"], now=NOW)[0] == [
        f"TLS_CERT_FILE {tmp_path}/nope.pem: the file does not exist",
        f"TLS_KEY_FILE {tmp_path}/nokey.pem: the file does not exist"]
    (tmp_path / "dir.pem").mkdir()
    (tmp_path / "k.pem").write_text("x")
    assert certs.check(tmp_path / "dir.pem", tmp_path / "k.pem", ["a.example"], now=NOW)[0] == [
        f"TLS_CERT_FILE {tmp_path}/dir.pem: cannot read it (Is a directory)"]


def test_not_pem(tmp_path):
    cert, key = make_cert()
    assert certs.check(*files(tmp_path, b"hello", key), ["shop.example.com"], now=NOW)[0] == [
        f"TLS_CERT_FILE {tmp_path}/cert.pem: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)"]
    assert certs.check(*files(tmp_path, cert, b"hello"), ["shop.example.com"], now=NOW)[0] == [
        f"TLS_KEY_FILE {tmp_path}/key.pem: not an unencrypted PEM private key"]


def test_a_key_that_does_not_match_the_certificate(tmp_path):
    cert, _ = make_cert()
    other = pem_key(ec.generate_private_key(ec.SECP256R1()))
    assert certs.check(*files(tmp_path, cert, other), ["shop.example.com"], now=NOW)[0] == [
        f"TLS_KEY_FILE {tmp_path}/key.pem: the key does not match the certificate in {tmp_path}/cert.pem"]


def test_a_certificate_that_does_not_cover_the_allowed_hosts(tmp_path):
    assert check(tmp_path, ["shop.example.com", "api.example.com", "10.0.0.5"], names=("shop.example.com",)) == [
        f"TLS_CERT_FILE {tmp_path}/cert.pem: does not cover api.example.com, 10.0.0.5 of DJANGO_ALLOWED_HOSTS "
        f"(it names: shop.example.com)"]
    assert check(tmp_path, ["a.example.com"], names=()) == [
        f"TLS_CERT_FILE {tmp_path}/cert.pem: does not cover a.example.com of DJANGO_ALLOWED_HOSTS "
        f"(it names: no subjectAltName)"]


@pytest.mark.parametrize("hosts,names,missing", [
    (["www.example.com"], ("*.example.com",), []),                       # a wildcard covers one label
    (["a.b.example.com"], ("*.example.com",), ["a.b.example.com"]),       # ... not two
    (["example.com"], ("*.example.com",), ["example.com"]),               # ... nor the domain itself
    ([".example.com"], ("example.com", "*.example.com"), []),             # Django's domain-and-subdomains
    ([".example.com"], ("*.example.com",), [".example.com"]),
    (["WWW.Example.COM"], ("www.example.com",), []),                      # names are case-insensitive
    (["*"], ("*.example.com",), ["*"]),                                   # '*' can never be covered
    (["10.0.0.5"], (), []),                                               # IP addresses: IP SANs
])
def test_coverage_rules(hosts, names, missing):
    cert, _ = make_cert(names, ips=("10.0.0.5",) if hosts == ["10.0.0.5"] else ())
    assert certs.uncovered(hosts, x509.load_pem_x509_certificate(cert)) == missing


def test_expired_and_not_yet_valid(tmp_path):
    assert check(tmp_path, ["shop.example.com"], start_days=-40, days=30) == [
        f"TLS_CERT_FILE {tmp_path}/cert.pem: expired on 2026-11-21 10:00 UTC"]
    assert check(tmp_path, ["shop.example.com"], start_days=2, days=30) == [
        f"TLS_CERT_FILE {tmp_path}/cert.pem: not valid before 2026-12-03 10:00 UTC"]


def problems(tmp_path, **over):
    write(tmp_path, **over)
    with pytest.raises(ConfigError) as err:
        config.load("prod", env_dir=tmp_path, environ={})
    return err.value.problems


def test_files_mode_errors_name_the_env_line_the_key_and_the_file(tmp_path):
    cert, _ = make_cert(("shop.example.com",), start_days=-40, days=30)   # expired 2026-11-21 (NOW - 10 days)
    files(tmp_path, cert, pem_key(ec.generate_private_key(ec.SECP256R1())))
    path = tmp_path / "prod.env"
    assert problems(tmp_path, TLS_MODE="files", TLS_CERT_FILE="cert.pem", TLS_KEY_FILE="key.pem") == [
        f"{path}:13: TLS_KEY_FILE {tmp_path}/key.pem: the key does not match the certificate in {tmp_path}/cert.pem",
        f"{path}:12: TLS_CERT_FILE {tmp_path}/cert.pem: does not cover www.example.com of DJANGO_ALLOWED_HOSTS "
        f"(it names: shop.example.com)",
        f"{path}:12: TLS_CERT_FILE {tmp_path}/cert.pem: expired on 2026-11-21 10:00 UTC"]


def test_files_mode_needs_both_files_and_a_good_pair_loads(tmp_path):
    path = tmp_path / "prod.env"
    assert problems(tmp_path, TLS_MODE="files") == [
        f"{path} (default TLS_CERT_FILE): TLS_MODE=files needs TLS_CERT_FILE (a PEM file)",
        f"{path} (default TLS_KEY_FILE): TLS_MODE=files needs TLS_KEY_FILE (a PEM file)"]
    now = datetime.datetime.now(datetime.timezone.utc)
    cert, key = make_cert(("shop.example.com", "www.example.com"), start_days=(now - NOW).days - 1)
    files(tmp_path, cert, key)
    write(tmp_path, TLS_MODE="files", TLS_CERT_FILE="cert.pem", TLS_KEY_FILE="key.pem")
    cfg = config.load("prod", env_dir=tmp_path, environ={})
    assert (cfg.tls_mode, cfg.tls_cert, cfg.tls_key) == ("files", cert.decode(), key.decode())
    assert key.decode() in cfg.secrets and key.decode() not in repr(cfg)


def test_tls_config_errors_verbatim(tmp_path):
    path = tmp_path / "prod.env"
    assert problems(tmp_path, TLS_MODE="tls", HTTPS_PORT="x", HSTS_MAX_AGE="-1", HSTS_PRELOAD="yes") == [
        f"{path}:11: TLS_MODE must be one of acme, files, external (got 'tls')",
        f"{path}:12: HTTPS_PORT must be a whole number from 1 to 65535 (got 'x')",
        f"{path}:13: HSTS_MAX_AGE must be a whole number from 0 to 63072000 (got '-1')",
        f"{path}:14: HSTS_PRELOAD must be one of on, off (got 'yes')"]
    assert problems(tmp_path, HSTS_PRELOAD="on") == [
        f"{path}:11: HSTS_PRELOAD=on needs HSTS_INCLUDE_SUBDOMAINS=on and HSTS_MAX_AGE of at least 31536000 (a year); "
        f"raise them once HTTPS is proven"]
    assert problems(tmp_path, HTTPS_PORT="80") == [
        f"{path}:11: HTTPS_PORT and PUBLISHED_PORT are both 80; HTTP (redirects, ACME) and HTTPS need two ports"]
    assert problems(tmp_path, PROXY="off") == [
        f"{path} (default TLS_MODE): TLS_MODE=acme needs the stack's proxy (PROXY=on); with PROXY=off TLS must end "
        f"before the stack: TLS_MODE=external"]
    assert problems(tmp_path, TLS_MODE="external") == [
        f"{path} (default TRUSTED_LB): TLS_MODE=external needs TRUSTED_LB, the load balancers' addresses or CIDRs, "
        f"comma separated (got '')"]
    assert problems(tmp_path, TLS_MODE="external", TRUSTED_LB="not-an-ip") == [
        f"{path}:12: TLS_MODE=external needs TRUSTED_LB, the load balancers' addresses or CIDRs, comma separated "
        f"(got 'not-an-ip')"]


def test_acme_config_errors_verbatim(tmp_path):
    path = tmp_path / "prod.env"
    (tmp_path / "root.pem").write_text("not a certificate")
    assert problems(tmp_path, DJANGO_ALLOWED_HOSTS="shop.example.com,.example.com,10.0.0.1",
                    ACME_DIRECTORY="http://ca.example/dir", ACME_EMAIL="nobody", ACME_CA_ROOT_FILE="root.pem") == [
        f"{path}:11: ACME_DIRECTORY must be an https:// URL (got 'http://ca.example/dir')",
        f"{path}:12: ACME_EMAIL must be an e-mail address (got 'nobody')",
        f"{path}:8: DJANGO_ALLOWED_HOSTS entry .example.com: needs a wildcard certificate, which HTTP-01 cannot get; "
        f"list the names in DJANGO_ALLOWED_HOSTS or use TLS_MODE=files",
        f"{path}:8: DJANGO_ALLOWED_HOSTS entry 10.0.0.1: TLS_MODE=acme orders names only, not IP addresses; remove it "
        f"from DJANGO_ALLOWED_HOSTS or use TLS_MODE=files",
        f"{path}:13: ACME_CA_ROOT_FILE {tmp_path}/root.pem: no PEM certificate in it"]
    assert problems(tmp_path, ACME_CA_ROOT_FILE="missing.pem") == [
        f"{path}:11: ACME_CA_ROOT_FILE {tmp_path}/missing.pem: cannot read it (No such file or directory)"]
