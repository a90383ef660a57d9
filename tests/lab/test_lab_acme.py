"""The lab ACME CA for real: a private Pebble + challtestsrv (own names, network, ports), real HTTP-01 issuance
through a responder on this host, and a wrong key authorization refused with Pebble's reason."""

from __future__ import annotations

import datetime
import os
import secrets
import subprocess

import pytest
from acme import errors
from cryptography import x509
from cryptography.x509 import verification

from acmehelpers import Responder, acme_client, failure_details, issue
from labhelpers import free_port
from deploy.lab import acme as lab_acme

pytestmark = pytest.mark.lab
OWNER = str(os.getpid())


@pytest.fixture(scope="module")
def ca(docker_client):
    from invoke import Context

    from deploy.core.runner import Runner

    runner = Runner(ctx=Context(), echo=False)
    spec = lab_acme.AcmeSpec(prefix=f"djdeploy-test-acme{OWNER}", http_port=free_port(), validity=120,
                             labels=(("djdeploy.test", "acme"), ("djdeploy.owner", OWNER)))
    try:
        record = lab_acme.ensure(runner, spec, say=lambda line: None)
        yield runner, spec, record
    finally:
        for name in (spec.pebble, spec.challtestsrv):
            out = runner.run(["docker", "logs", "--tail", "30", name], check=False, hide=True)
            print(f"==== {name} ====\n{out.stdout}{out.stderr}")
        lab_acme.remove(runner, spec)


@pytest.fixture
def account(ca):
    runner, spec, record = ca
    return acme_client(record["directory"], lab_acme.api_root_pem(runner, spec))


def test_http01_issuance_end_to_end_with_a_chain_to_the_lab_root(ca, account):
    runner, spec, record = ca
    name = f"app-{secrets.token_hex(4)}.lab.test"
    with Responder(record["target_ipv4"], spec.http_port) as responder:
        fullchain = issue(*account, [name], responder)
    # Pebble really fetched the token from this host, by the name, through challtestsrv's answer.
    assert any(r.startswith(f"{name}:{spec.http_port} /.well-known/acme-challenge/") for r in responder.requests), \
        responder.requests
    leaf, intermediate = x509.load_pem_x509_certificates(fullchain.encode())[:2]
    root_pem, intermediate_pem = lab_acme.ca_pems(runner, spec)
    assert intermediate == x509.load_pem_x509_certificate(intermediate_pem.encode())
    store = verification.Store([x509.load_pem_x509_certificate(root_pem.encode())])
    verifier = verification.PolicyBuilder().store(store).build_server_verifier(x509.DNSName(name))
    verifier.verify(leaf, [intermediate])  # raises if the chain does not verify for the name
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert abs(lifetime - datetime.timedelta(seconds=spec.validity)) <= datetime.timedelta(seconds=2), lifetime


def test_a_renewal_is_validated_again_and_gets_a_new_serial(ca, account):
    """No authorization reuse: every order (a renewal too) fetches the token again through the HTTP port."""
    runner, spec, record = ca
    name = f"renew-{secrets.token_hex(4)}.lab.test"
    with Responder(record["target_ipv4"], spec.http_port) as responder:
        first = x509.load_pem_x509_certificates(issue(*account, [name], responder).encode())[0]
        second = x509.load_pem_x509_certificates(issue(*account, [name], responder).encode())[0]
    assert first.serial_number != second.serial_number
    assert len({r for r in responder.requests if "/.well-known/acme-challenge/" in r}) == 2, responder.requests


def test_services_on_an_attachable_overlay_reach_pebble_by_name(ca):
    """connect_argv: a Swarm stack's network (attachable overlay) gets Pebble as `pebble`; its API certificate
    verifies against api_root_pem for that name."""
    runner, spec, record = ca
    network = f"djdeploy-test-acme{OWNER}-ov"
    runner.run(["docker", "network", "create", "--driver", "overlay", "--attachable", "--label", "djdeploy.test=acme",
                "--label", f"djdeploy.owner={OWNER}", network], hide=True)
    try:
        runner.run(lab_acme.connect_argv(spec, network), hide=True)
        script = ('printf "%s" "$ROOT" > /tmp/root.pem && echo | openssl s_client -connect pebble:14000 '
                  '-servername pebble -CAfile /tmp/root.pem -verify_return_error -verify_hostname pebble')
        done = subprocess.run(["docker", "run", "--rm", "--network", network, "--label", "djdeploy.test=acme",
                               "--env", "ROOT", "--entrypoint", "sh", lab_acme.IMAGE, "-c", script],
                              env={**os.environ, "ROOT": lab_acme.api_root_pem(runner, spec)},
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "Verify return code: 0 (ok)" in done.stdout, \
            done.stdout[-800:] + done.stderr[-800:]
    finally:
        runner.run(lab_acme.disconnect_argv(spec, network), check=False, hide=True)
        runner.run(["docker", "network", "rm", network], check=False, hide=True)


def test_wrong_key_authorization_fails_validation_with_pebbles_reason(ca, account):
    runner, spec, record = ca
    name = f"wrong-{secrets.token_hex(4)}.lab.test"
    with Responder(record["target_ipv4"], spec.http_port) as responder, pytest.raises(errors.ValidationError) as exc:
        issue(*account, [name], responder, wrong=True)
    details = failure_details(exc.value)
    assert len(details) == 1 and details[0].startswith("urn:ietf:params:acme:error:unauthorized: "), details
    assert "key authorization" in details[0].lower(), details
    assert responder.requests, "Pebble never asked for the token: validation was not real"


def test_a_name_pointed_elsewhere_is_not_validated_from_here(ca, account):
    """set_address sends one name elsewhere (127.0.0.2 inside Pebble: nothing listens): validation fails there."""
    runner, spec, record = ca
    name = f"elsewhere-{secrets.token_hex(4)}.lab.test"
    lab_acme.set_address(runner, spec, name, "127.0.0.2")
    try:
        with Responder(record["target_ipv4"], spec.http_port) as responder, \
                pytest.raises(errors.ValidationError) as exc:
            issue(*account, [name], responder)
    finally:
        lab_acme.set_address(runner, spec, name, None)
    details = failure_details(exc.value)
    assert len(details) == 1 and "127.0.0.2" in details[0], details
    assert not responder.requests


def test_lab_up_runs_the_lab_ca_and_records_it(docker_client):
    """The shared lab's own instance (started by `inv lab.up`): answering, recorded in state.json, in lab.status."""
    import json

    from invoke import Context

    from deploy.lab import paths, provision
    from deploy.core.runner import Runner

    runner = Runner(ctx=Context(), echo=False)
    spec = lab_acme.lab_spec()
    assert lab_acme.running(runner, spec), "run `inv lab.up`: it starts the lab ACME CA"
    record = json.loads(paths.STATE_FILE.read_text())["acme"]
    assert record["containers"] == [spec.challtestsrv, spec.pebble] and record["http_port"] == 8080
    directory = lab_acme.get_json(record["directory"], lab_acme.api_root_pem(runner, spec))
    assert directory["newOrder"].startswith("https://127.0.0.1:")
    root, intermediate = (x509.load_pem_x509_certificate(p.encode()) for p in lab_acme.ca_pems(runner, spec))
    assert intermediate.issuer == root.subject
    row = [r for r in provision.status() if r[0] == "acme"]
    assert row == [("acme", True, f"Pebble at {record['directory']} (HTTP-01 on port 8080, 300s certificates)")]
    labels = docker_client.containers.get(spec.pebble).labels
    assert labels.get(paths.LABEL) == str(paths.LAB_DIR)  # so `lab.down` removes it
