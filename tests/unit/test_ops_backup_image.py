"""The backup image (deploy.ops.backup_image: POSTGRES_IMAGE + Perl's TLS + CA certificates, built and pushed once by
the deploy when backups are copied off-site) and BACKUP_S3_CA_FILE (a private CA for an https:// store, shipped as a
versioned Swarm secret): the recipe and its tag, the exact SDK build and its errors, the registry cache, the plan's
step only with a bucket, the service and the one-off listing on that image, every settings error verbatim."""

from __future__ import annotations

import datetime
import hashlib
import io
import os
import subprocess

import docker.errors
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shipfakes import config_problems as problems, env_line as where, make_cfg

from deploy.core.errors import ToolkitError
from deploy.ops import backup_image, offsite, schedule
from deploy.ship import edge_image, plan, recipe_image, stackfile

ON = ("BACKUP_SCHEDULE=on\nBACKUP_S3_BUCKET=djt-backups\nBACKUP_S3_ENDPOINT=https://s3.example.test:8443\n"
      "BACKUP_S3_ACCESS_KEY_ID=AKIDTEST\nBACKUP_S3_SECRET_ACCESS_KEY=s3-very-secret\n")
TAG = backup_image.recipe_tag("postgres:17-trixie")
REF = f"127.0.0.1:5000/djbackup:{TAG}"


def ca_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "backup test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


# ---- the recipe and its tag ----------------------------------------------------------------------------------

def test_the_recipe_adds_perl_tls_and_the_ca_bundle_to_postgres_image_and_checks_it():
    text = (backup_image.RECIPE_DIR / "Dockerfile").read_text()
    assert "ARG POSTGRES_IMAGE=postgres:17-trixie\nFROM ${POSTGRES_IMAGE}\n" in text
    assert " && apt-get install -y --no-install-recommends libio-socket-ssl-perl ca-certificates \\\n" in text
    assert "HTTP::Tiny->can_ssl; $ok or die" in text and "rm -rf /var/lib/apt/lists/*" in text


def test_the_recipe_is_hadolint_clean_at_warning():
    import shutil

    exe = shutil.which("hadolint")
    assert exe, "hadolint missing: pip install -r requirements-dev.txt"
    out = subprocess.run([exe, "--failure-threshold", "warning", str(backup_image.RECIPE_DIR / "Dockerfile")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_tag_follows_the_recipe_and_postgres_image(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    tag = backup_image.recipe_tag("postgres:17-trixie", tmp_path)
    assert tag == "b" + hashlib.sha256(b"postgres:17-trixie\0Dockerfile\0FROM x\n\0").hexdigest()[:12]
    assert backup_image.recipe_tag("postgres:17-trixie@sha256:" + "a" * 64, tmp_path) != tag
    (tmp_path / "Dockerfile").write_text("FROM y\n")
    assert backup_image.recipe_tag("postgres:17-trixie", tmp_path) != tag
    assert TAG.startswith("b") and len(TAG) == 13


def test_the_edge_tag_is_unchanged_by_the_shared_recipe_code():
    h = hashlib.sha256(b"haproxy:3.0-trixie\0")
    for name in edge_image.FILES:
        h.update(name.encode() + b"\0" + (edge_image.EDGE_DIR / name).read_bytes() + b"\0")
    assert edge_image.recipe_tag("haproxy:3.0-trixie") == "e" + h.hexdigest()[:12]


# ---- the build through the SDK, and the registry cache -------------------------------------------------------

class FakeImages:
    def __init__(self, exc=None):
        self.calls, self.exc = [], exc

    def build(self, **kw):
        self.calls.append(kw)
        if self.exc:
            raise self.exc
        return object(), []


class FakeClient:
    def __init__(self, exc=None):
        self.images, self.closed = FakeImages(exc), False

    def close(self):
        self.closed = True


def test_build_is_one_sdk_call_from_the_recipe_with_postgres_image(tmp_path, monkeypatch):
    cli = FakeClient()
    monkeypatch.setattr("deploy.core.engine.client", lambda **kw: cli)
    out = io.StringIO()
    assert backup_image.build(make_cfg(tmp_path, ON), TAG, out=out) == f"djbackup:{TAG}"
    assert cli.images.calls == [{"path": str(backup_image.RECIPE_DIR), "tag": f"djbackup:{TAG}",
                                 "buildargs": {"POSTGRES_IMAGE": "postgres:17-trixie"}, "rm": True, "forcerm": True,
                                 "labels": {"djdeploy.backup-image": TAG}}]
    assert out.getvalue() == f"  built djbackup:{TAG}\n" and cli.closed


@pytest.mark.parametrize("exc,message", [
    (docker.errors.BuildError("The command '/bin/sh -c apt-get update' returned a non-zero code: 100",
                              build_log=[{"stream": "E: Unable to locate package\n"}]),
     "build of the backup image FROM postgres:17-trixie failed: The command '/bin/sh -c apt-get update' returned a "
     "non-zero code: 100\nE: Unable to locate package\n"),
    (docker.errors.APIError("x", explanation="pull access denied for postgres"),
     "build of the backup image FROM postgres:17-trixie failed: pull access denied for postgres; is POSTGRES_IMAGE "
     "present or pullable (`inv lab.up` builds the lab's)?"),
])
def test_build_errors_are_one_toolkit_error(tmp_path, monkeypatch, exc, message):
    cli = FakeClient(exc)
    monkeypatch.setattr("deploy.core.engine.client", lambda **kw: cli)
    with pytest.raises(ToolkitError) as err:
        backup_image.build(make_cfg(tmp_path, ON), TAG, out=io.StringIO())
    assert str(err.value) == message and cli.closed


@pytest.mark.parametrize("present", [True, False])
def test_ensure_builds_and_pushes_only_when_the_registry_lacks_the_tag(tmp_path, monkeypatch, present):
    calls = []
    monkeypatch.setattr(recipe_image.registry, "manifest_digest",
                        lambda c, tag: calls.append(("head", c.app_image, tag)) or ("sha256:1" if present else None))
    monkeypatch.setattr(recipe_image.registry, "push",
                        lambda c, local, tag, out: calls.append(("push", c.app_image, local, tag)))
    monkeypatch.setattr(backup_image, "build", lambda c, tag, out: calls.append(("build", tag)) or f"djbackup:{tag}")
    assert backup_image.ensure(make_cfg(tmp_path, ON), out=io.StringIO()) == REF
    tail = [] if present else [("build", TAG), ("push", "djbackup", f"djbackup:{TAG}", TAG)]
    assert calls == [("head", "djbackup", TAG), *tail]


# ---- the plan and the service --------------------------------------------------------------------------------

def test_the_plan_builds_the_backup_image_only_with_off_site_copies_before_any_manager_step(tmp_path):
    rel = plan.Release(action="deploy", tag="v2", build=True, migrate=True, dirty=False, owner="me\n", stamp="T")
    steps = plan.build_deploy_plan(make_cfg(tmp_path, ON), rel, plan.EnvState(), "global\n").steps
    lines = [s.line() for s in steps]
    step = (f"[local] build the backup image {REF} unless the registry has it: FROM postgres:17-trixie + Perl TLS "
            f"and CA certificates, deploy/ops/backup-image (tag = hash of the recipe)")
    assert lines[5] == step and lines[3].startswith("[local] push 127.0.0.1:5000/djapp:v2")
    assert lines[4].startswith("[local] build the edge image")   # the proxy's image, then the backups'
    assert steps[5].action is backup_image.ensure_image and lines[6].startswith("[manager] put the stack file")
    for extra in ("BACKUP_SCHEDULE=on\n", ""):
        others = plan.build_deploy_plan(make_cfg(tmp_path, extra), rel, plan.EnvState(), "global\n").steps
        assert not any("backup image" in s.what for s in others)


def test_the_backup_service_runs_the_backup_image_only_with_off_site_copies(tmp_path):
    assert schedule.service(make_cfg(tmp_path, ON), "v1")["image"] == REF
    spec = stackfile.stack_spec(make_cfg(tmp_path, ON), "img", "v1", "r", "p", only=("backup",))
    assert spec["services"]["backup"]["image"] == REF
    assert schedule.service(make_cfg(tmp_path, "BACKUP_SCHEDULE=on\n"), "v1")["image"] == "postgres:17-trixie"
    other = make_cfg(tmp_path, ON + "BACKUP_IMAGE=team/pgbackup\nPOSTGRES_IMAGE=postgres:17.6-trixie\n")
    assert schedule.service(other, "v1")["image"] == (f"127.0.0.1:5000/team/pgbackup:"
                                                      f"{backup_image.recipe_tag('postgres:17.6-trixie')}")


# ---- BACKUP_S3_CA_FILE -----------------------------------------------------------------------------------------

def test_a_private_ca_is_a_versioned_secret_of_the_backup_service_and_stdin_of_the_listing(tmp_path):
    pem = ca_pem()
    (tmp_path / "store-ca.pem").write_text(pem)
    cfg = make_cfg(tmp_path, ON + "BACKUP_S3_CA_FILE=store-ca.pem\n")   # relative: to the env file
    assert (cfg.backup_s3_ca_file, cfg.backup_s3_ca) == (str(tmp_path / "store-ca.pem"), pem)
    svc = schedule.service(cfg, "v1")
    assert svc["environment"]["S3_CA_FILE"] == "/run/secrets/backup_s3_ca"
    assert {"source": "backup_s3_ca", "target": "backup_s3_ca"} in svc["secrets"]
    assert stackfile.secret_values(cfg)["backup_s3_ca"] == pem
    name = stackfile.secret_names(cfg)["backup_s3_ca"]
    assert name == f"djt_backup_s3_ca_{stackfile.digest8('djt:' + pem)}" and len(name) <= 64
    assert stackfile.stack_spec(cfg, "img", "v1", "r", "p")["secrets"]["backup_s3_ca"] == {"external": True,
                                                                                           "name": name}
    from deploy.ops.target import from_env

    argv = offsite.list_cmd(cfg, from_env(cfg))
    assert argv[-9:] == ["--env", "S3_REGION=us-east-1", "--env", "S3_CA_FILE=-", "--entrypoint", "perl", REF, "-",
                         "list"]
    assert offsite.list_stdin(cfg) == offsite.script() + "\n__END__\nAKIDTEST\ns3-very-secret\n" + pem
    plain = make_cfg(tmp_path, ON)
    assert "S3_CA_FILE" not in schedule.service(plain, "v1")["environment"]
    assert "backup_s3_ca" not in stackfile.secret_values(plain) and "S3_CA_FILE=-" not in offsite.list_cmd(
        plain, from_env(plain))


def test_every_ca_file_error_is_one_line_naming_the_file_and_the_fix(tmp_path):
    missing = tmp_path / "nope.pem"
    found = problems(tmp_path, ON + f"BACKUP_S3_CA_FILE={missing}\n")
    assert found[-1] == (f"{where(tmp_path, 'BACKUP_S3_CA_FILE')}: BACKUP_S3_CA_FILE {missing}: cannot read it (No "
                         f"such file or directory); give the PEM file of the CA that signs the store's certificate, "
                         f"or remove BACKUP_S3_CA_FILE to trust the system's CA certificates")
    (tmp_path / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    found = problems(tmp_path, ON + "BACKUP_S3_CA_FILE=key.pem\n")
    assert found[-1] == (f"{where(tmp_path, 'BACKUP_S3_CA_FILE')}: BACKUP_S3_CA_FILE {tmp_path / 'key.pem'}: no PEM "
                         f"certificate in it; give the CA's certificate in PEM (-----BEGIN CERTIFICATE-----)")
    (tmp_path / "ca.pem").write_text(ca_pem())
    found = problems(tmp_path, ON.replace("https://s3.example.test:8443", "http://s3:5000") + "BACKUP_S3_CA_FILE=ca.pem\n")
    assert found[-1] == (f"{where(tmp_path, 'BACKUP_S3_CA_FILE')}: BACKUP_S3_CA_FILE needs an https:// "
                         f"BACKUP_S3_ENDPOINT (got 'http://s3:5000'); use https, or remove BACKUP_S3_CA_FILE")
    found = problems(tmp_path, "BACKUP_S3_CA_FILE=ca.pem\n")
    assert found[-1] == (f"{where(tmp_path, 'BACKUP_S3_CA_FILE')}: BACKUP_S3_CA_FILE is set but BACKUP_S3_BUCKET is "
                         f"empty; set the bucket to copy backups off-site, or remove the BACKUP_S3_* keys")
    found = problems(tmp_path, ON + "BACKUP_IMAGE=Bad Name\n")
    assert found[-1] == (f"{where(tmp_path, 'BACKUP_IMAGE')}: BACKUP_IMAGE must be a lowercase repository name like "
                         f"djbackup (got 'Bad Name')")
    assert make_cfg(tmp_path, "BACKUP_SCHEDULE=on\n").backup_image == "djbackup"   # default: no stray-key error


# ---- the Perl client's TLS settings, on the host's perl ------------------------------------------------------

def test_the_client_always_verifies_and_trusts_s3_ca_file_instead_of_the_system_bundle():
    text = offsite.script()
    assert "verify_SSL => 1," in text and "verify_SSL => 0" not in text and "SSL_verify_mode" not in text
    assert "SSL_options => { SSL_ca_file => $ca }" in text


def test_a_perl_without_tls_says_so_for_https_and_keeps_the_local_backups(tmp_path):
    if subprocess.run(["perl", "-MIO::Socket::SSL", "-e1"], capture_output=True).returncode == 0:
        pytest.skip("this host's perl has IO::Socket::SSL (the message is for images without it)")
    env = {"PATH": os.environ["PATH"], "BACKUP_DIR": str(tmp_path), "S3_ENDPOINT": "https://127.0.0.1:1",
           "S3_BUCKET": "b", "S3_PREFIX": "p", "S3_REGION": "us-east-1", "KEEP_DAILY": "7", "KEEP_WEEKLY": "4",
           "S3_CREDENTIALS": "stdin"}
    (tmp_path / "x.dump.meta").write_text("reason=manual\n")
    out = subprocess.run(["perl", str(offsite.SCRIPT), "sync"], input="AKIDTEST\nsecret\n", text=True,
                         capture_output=True, env=env, timeout=60)
    assert out.returncode == 1 and out.stdout.startswith(
        "backup: ERROR off-site copy impossible: this image's Perl cannot do HTTPS for https://127.0.0.1:1: ")
    assert out.stdout.rstrip().endswith("(the backup image deploy/ops/backup-image adds libio-socket-ssl-perl and "
                                        "ca-certificates); the local backups are kept")
    assert sorted(os.listdir(tmp_path)) == ["x.dump.meta"]
    listed = subprocess.run(["perl", str(offsite.SCRIPT), "list"], input="AKIDTEST\nsecret\n", text=True,
                            capture_output=True, env=env, timeout=60)
    assert listed.returncode == 2 and listed.stderr.startswith("this image's Perl cannot do HTTPS for https://")
