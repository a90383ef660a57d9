"""Issue 9 faults and rotation on the lab deploy (after test_https_lab, same session stack and CA):

- a CA that fails validation, and a CA that cannot be reached, fail the deploy with the CA's reason BEFORE any app
  change, and the existing certificate keeps being served;
- a user-provided certificate (TLS_MODE=files) deployed and then replaced under load: 0 failed requests, the
  served serial becomes the file's.
Each test that changes the environment puts it back (a deploy of the session's ACME configuration).
"""

from __future__ import annotations

import datetime
import io
import re
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shiphelpers import HOST, Site, docker, local_runner
from test_https_lab import certs_logs, loads, poll, served_serial, serving, stop  # noqa: F401 (serving: fixture)

pytestmark = [pytest.mark.lab, pytest.mark.engine]


def deploy(env, tag, out=None):
    from deploy.ship import executor

    out = out or io.StringIO()
    try:
        return executor.deploy(env.cfg(), tag=tag, build=False, out=out)
    finally:
        print(out.getvalue()[-2500:])


def names_served(env) -> set:
    from cryptography import x509

    from test_https_lab import tls_socket

    with tls_socket(env) as s:
        cert = x509.load_der_x509_certificate(s.getpeercert(binary_form=True))
    return set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName))


def app_spec(env) -> str:
    return docker("service", "inspect", "--format", "{{json .Spec.TaskTemplate.ContainerSpec}}",
                  f"{env.stack}_app").stdout


def audit_last(env) -> str:
    return open(f"/var/lib/djdeploy/{env.stack}/audit.log").read().splitlines()[-1]


@pytest.mark.parametrize("fault", ["failed validation", "unreachable CA"])
def test_an_acme_failure_fails_the_deploy_with_the_cas_reason_before_any_app_change(env, serving, fault):
    from deploy.core.errors import ToolkitError
    from deploy.lab import acme

    spec_before, serial = app_spec(env), served_serial(env)
    good = dict(env.extra)
    if fault == "failed validation":  # Pebble resolves the new name to 127.0.0.2, where nothing listens
        acme.set_address(local_runner(), env.acme, f"bad.{HOST}", "127.0.0.2")
        env.write(DJANGO_ALLOWED_HOSTS=f"{HOST},bad.{HOST}")
        reason = "validation failed: urn:ietf:params:acme:error:connection"
    else:
        env.write(ACME_DIRECTORY=f"https://{env.acme.pebble}:14999/dir")  # nothing listens there
        reason = "Connection refused"
    try:
        with pytest.raises(ToolkitError) as err:
            deploy(env, serving)
        text = str(err.value)
        assert text.startswith("no valid certificate for "), text
        assert reason in text and "nothing was rolled out: lab keeps serving the previous version" in text, text
        assert app_spec(env) == spec_before  # the app was not touched
        # the old certificate keeps serving (or its own renewal, when one came due: the bad configuration cannot
        # obtain any certificate, so every newly issued serial is the good configuration's)
        served = served_serial(env)
        assert served == serial or served in issued_serials(env), (served, serial)
        assert Site(env).get("/")[0] == 200
        assert audit_last(env).endswith("result=failed")
        if fault == "failed validation":   # the DNS is fixed: the same configuration, redeployed, passes at once
            acme.set_address(local_runner(), env.acme, f"bad.{HOST}", None)
            out = io.StringIO()
            deploy(env, serving, out=out)   # not failed by the attempts that failed before it
            assert "its earlier attempts failed" in out.getvalue() and "asking it to retry now" in out.getvalue()
            poll("the certificate for both names served", lambda: names_served(env) == {HOST, f"bad.{HOST}"},
                 timeout=60)
    finally:
        if fault == "failed validation":
            acme.set_address(local_runner(), env.acme, f"bad.{HOST}", None)
        env.extra.clear()
        env.extra.update(good)
        env.write()
        deploy(env, serving)  # back to the session's ACME configuration
    assert Site(env).get("/")[0] == 200


def issued_serials(env) -> set:
    return set(re.findall(r"new certificate serial=([0-9a-f]+)", certs_logs(env)))


def _ca():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "djdeploy test user CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def _leaf(ca_key, ca_cert, directory, n):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_file, key_file = directory / f"user{n}.crt", directory / f"user{n}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return cert_file, key_file, format(cert.serial_number, "x")


def test_a_user_certificate_deployed_and_replaced_under_load_without_a_failed_request(env, serving):
    import ssl

    ca_key, ca_cert = _ca()
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM).decode()
    bundle = env.dir / "both-roots.pem"
    bundle.write_text(env.ca_root + ca_pem)
    context = ssl.create_default_context(cadata=env.ca_root + ca_pem)
    good = dict(env.extra)
    gens = loads(env, context, seconds=400)
    try:
        for n in (1, 2):
            cert_file, key_file, serial = _leaf(ca_key, ca_cert, env.dir, n)
            env.write(TLS_MODE="files", TLS_CERT_FILE=str(cert_file), TLS_KEY_FILE=str(key_file),
                      HEALTH_CA_FILE=str(bundle))
            deploy(env, serving)
            poll(f"user certificate {n} served", lambda: gens[1].stats.serials[-1:] == [serial], timeout=30)
        time.sleep(3)
    finally:
        stats = stop(gens)
        env.extra.clear()
        env.extra.update(good)
        env.write()
    assert stats[1].serials[-2:] == [_serial_of(env.dir / "user1.crt"), _serial_of(env.dir / "user2.crt")]
    deploy(env, serving)  # back to ACME
    assert Site(env).get("/")[0] == 200


def _serial_of(path) -> str:
    return format(x509.load_pem_x509_certificates(path.read_bytes())[0].serial_number, "x")
