"""The edge agent's logic on the host (deploy/ship/edge/*.py run in the edge image): when a certificate counts as
valid for the certs service's configuration, when it is renewed, its status file, and the exact admin-socket
transaction the sync program sends to HAProxy."""

import datetime
import json
import socket
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy" / "ship" / "edge"))

import edge_certs  # noqa: E402
import edge_sync  # noqa: E402

NOW = datetime.datetime.now(datetime.timezone.utc)


def bundle(names=("djlab.test",), start=-60, lifetime=120) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")])).public_key(key.public_key())
            .serial_number(0xabc).not_valid_before(NOW + datetime.timedelta(seconds=start))
            .not_valid_after(NOW + datetime.timedelta(seconds=start + lifetime))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode() + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def certs(tmp_path, names="djlab.test", directory="https://ca/dir", mode="acme"):
    args = SimpleNamespace(state=str(tmp_path), names=names, directory=directory, mode=mode, config_id="cfg1")
    return edge_certs.Certs(args)


def test_a_certificate_is_valid_for_its_names_and_its_issuer_and_is_renewed_at_two_thirds(tmp_path):
    c = certs(tmp_path)
    assert not c.valid()
    c.set_bundle(bundle(), "https://ca/dir")
    assert c.valid()
    assert c.renew_at() == pytest.approx((NOW + datetime.timedelta(seconds=20)).timestamp(), abs=1)
    status = json.loads((tmp_path / "status.json").read_text())
    assert (status["config_id"], status["state"], status["valid"], status["serial"], status["names"]) == (
        "cfg1", "ok", True, "abc", ["djlab.test"])


def test_new_names_another_ca_or_an_expired_certificate_need_a_new_order_while_the_old_one_is_kept(tmp_path):
    certs(tmp_path).set_bundle(bundle(), "https://ca/dir")
    assert certs(tmp_path).valid()                                   # reloaded from the volume
    assert not certs(tmp_path, names="djlab.test,new.djlab.test").valid()
    assert not certs(tmp_path, directory="https://other-ca/dir").valid()
    assert not certs(tmp_path, mode="files").valid()
    assert certs(tmp_path, directory="https://other-ca/dir").bundle  # still served meanwhile
    c = certs(tmp_path)
    c.set_bundle(bundle(start=-200), "https://ca/dir")
    assert not c.valid()


def test_failure_status_says_error_only_without_a_valid_certificate(tmp_path):
    c = certs(tmp_path)
    c.error, c.failures = "urn:ietf:params:acme:error:rateLimited: slow down", 2
    c.save_status()
    status = json.loads((tmp_path / "status.json").read_text())
    assert (status["state"], status["valid"], status["failures"]) == ("error", False, 2)


def test_sync_installs_a_bundle_with_one_transaction_on_the_admin_socket(tmp_path):
    path = str(tmp_path / "admin.sock")
    received = []
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(2)

    def answer():
        for reply in (b"Transaction created for certificate /tmp/edge/site.pem!\n",
                      b"Committing /tmp/edge/site.pem.\nSuccess!\n"):
            conn, _ = server.accept()
            data = b""
            while not (data.endswith(b"\n\n") or (data.endswith(b"\n") and b"<<" not in data)):
                data += conn.recv(65536)
            received.append(data.decode())
            conn.sendall(reply)
            conn.close()

    thread = threading.Thread(target=answer)
    thread.start()
    pem = bundle()
    edge_sync.install(SimpleNamespace(socket=path, cert=str(tmp_path / "site.pem")), pem)
    thread.join(5)
    server.close()
    assert received == [f"set ssl cert {tmp_path}/site.pem <<\n{pem.strip()}\n\n", f"commit ssl cert {tmp_path}/site.pem\n"]
    assert (tmp_path / "site.pem").read_text() == pem


def fake_haproxy(tmp_path, monkeypatch, rc=0, out=""):
    """A `haproxy` on PATH that records its arguments and answers `-c` with ``rc`` (and ``out`` on stderr)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "haproxy"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/haproxy.args\necho '{out}' >&2\nexit {rc}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")


def sync_args(tmp_path, **over):
    base = dict(config=str(tmp_path / "haproxy.cfg"), state_file=str(tmp_path / "server-state"),
                socket=str(tmp_path / "admin.sock"), config_from="http://certs/haproxy.cfg")
    return SimpleNamespace(**{**base, **over})


def test_a_new_configuration_is_checked_its_server_state_saved_then_the_master_reloads(tmp_path, monkeypatch):
    fake_haproxy(tmp_path, monkeypatch)
    (tmp_path / "haproxy.cfg").write_text("old\n")
    monkeypatch.setattr(edge_sync, "admin", lambda sock, cmd: "1\n# be_id be_name srv_id srv_name srv_addr\n")
    signals = []
    monkeypatch.setattr(edge_sync.os, "kill", lambda pid, sig: signals.append((pid, sig)))
    assert edge_sync.reload_config(sync_args(tmp_path), "new\n") is True
    assert (tmp_path / "haproxy.args").read_text() == f"-W -c -f {tmp_path}/haproxy.cfg.new\n"
    assert (tmp_path / "server-state").read_text() == "1\n# be_id be_name srv_id srv_name srv_addr\n"
    assert (tmp_path / "haproxy.cfg").read_text() == "new\n" and not (tmp_path / "haproxy.cfg.new").exists()
    assert signals == [(edge_sync.os.getppid(), edge_sync.signal.SIGUSR2)]   # the master is this program's parent


def test_a_configuration_that_fails_the_check_is_logged_and_never_loaded(tmp_path, monkeypatch, capsys):
    fake_haproxy(tmp_path, monkeypatch, rc=1, out="[ALERT] (7) : config : parsing [x:3] : unknown keyword bogus")
    (tmp_path / "haproxy.cfg").write_text("old\n")
    monkeypatch.setattr(edge_sync.os, "kill", lambda pid, sig: pytest.fail("reloaded a configuration that failed"))
    assert edge_sync.reload_config(sync_args(tmp_path), "bogus\n") is False
    assert (tmp_path / "haproxy.cfg").read_text() == "old\n" and not (tmp_path / "haproxy.cfg.new").exists()
    line = capsys.readouterr().out.strip()
    assert line.endswith("edge-agent ERROR configsync: the new configuration fails `haproxy -c`, the running one "
                         "stays: [ALERT] (7) : config : parsing [x:3] : unknown keyword bogus"), line


def test_each_fetch_reports_this_proxys_configuration_and_serial_and_a_change_reloads_it(tmp_path, monkeypatch):
    fetched, reloaded = [], []

    def fetch(url, etag="", timeout=5, headers=None):
        fetched.append((url, etag, dict(headers)))
        return ("cfg-2\n", '"e2"') if url.endswith("haproxy.cfg") else (None, etag)

    monkeypatch.setattr(edge_sync, "fetch", fetch)
    monkeypatch.setattr(edge_sync, "reload_config", lambda args, text: reloaded.append(text) or True)
    seen = {"config_etag": '"e1"', "cert_etag": '"c1"', "serial": "abc", "config": "1111"}
    edge_sync.sync_once(sync_args(tmp_path, source="http://certs/bundle"), seen)
    report = {"X-Edge-Proxy": socket.gethostname(), "X-Edge-Config": "1111", "X-Edge-Serial": "abc"}
    assert fetched == [("http://certs/haproxy.cfg", '"e1"', report), ("http://certs/bundle", '"c1"', report)]
    assert reloaded == ["cfg-2\n"] and seen["config"] == edge_sync.digest("cfg-2\n") and seen["config_etag"] == '"e2"'


def test_the_certs_service_serves_the_proxy_configuration_and_what_each_proxy_reported(tmp_path):
    cfg_file = tmp_path / "haproxy.cfg"
    cfg_file.write_text("global\n")
    args = SimpleNamespace(state=str(tmp_path), names="djlab.test", directory="https://ca/dir", mode="acme",
                           config_id="cfg1", haproxy_cfg=str(cfg_file))
    c = edge_certs.Certs(args)
    c.save_status()
    c.report({"X-Edge-Proxy": "node-1", "X-Edge-Config": "aaaa", "X-Edge-Serial": "abc"})
    c.report({})   # a fetch without the headers (an older proxy, a person with curl) reports nothing
    status = c.live_status()
    assert status["proxy_config"] == edge_sync.digest("global\n")
    assert list(status["proxies"]) == ["node-1"]
    assert {k: v for k, v in status["proxies"]["node-1"].items() if k not in ("seen", "age")} == \
        {"config": "aaaa", "serial": "abc"}
