"""deploy.lab.acme (the lab's Pebble CA) and the lab parts around it: exact commands, spec checks, the lab's own
instance names, ensure's decisions over a scripted engine, the state record; the browser harness's builders."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy.core.errors import ToolkitError
from deploy.lab import acme, host, state
from deploy.core.runner import Runner

SPEC = acme.AcmeSpec(prefix="t", labels=(("k", "v"),), http_port=8080, validity=300, api_port=14000,
                     mgmt_port=14001, dns_mgmt_port=14002)
HARD = ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true", "--memory", "256m",
        "--pids-limit", "256", "--restart", "unless-stopped"]


def test_network_argv():
    assert acme.network_create_argv(SPEC) == ["docker", "network", "create", "--driver", "bridge", "--label", "k=v",
                                              "t-acme"]


def test_challtestsrv_answers_every_name_with_the_target_and_serves_no_challenges():
    assert acme.challtestsrv_argv(SPEC, "172.20.0.1") == [
        "docker", "run", "--detach", "--name", "t-challtestsrv", "--network", "t-acme", "--label", "k=v", *HARD,
        "--publish", "127.0.0.1:14002:8055", "djdeploy-lab/pebble:2.6", "pebble-challtestsrv",
        "-defaultIPv4", "172.20.0.1", "-defaultIPv6", "", "-dns01", ":8053", "-management", ":8055",
        "-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", ""]


def test_pebble_validates_for_real_on_the_http_port_with_short_certificates():
    argv = acme.pebble_argv(SPEC)
    assert argv == [
        "docker", "run", "--detach", "--name", "t-pebble", "--network", "t-acme", "--network-alias", "pebble",
        "--label", "k=v", *HARD, "--tmpfs", "/run/pebble:rw,nosuid,nodev,uid=10001,gid=10001,mode=0700",
        "--env", "PEBBLE_HTTP_PORT=8080", "--env", "PEBBLE_CERT_VALIDITY=300", "--env", "PEBBLE_VA_NOSLEEP=1",
        "--env", "PEBBLE_AUTHZREUSE=0", "--env", "PEBBLE_WFE_NONCEREJECT=0", "--env", "PEBBLE_TLS_NAMES=t-pebble",
        "--publish", "127.0.0.1:14000:14000", "--publish", "127.0.0.1:14001:15000", "djdeploy-lab/pebble:2.6",
        "pebble", "-dnsserver", "t-challtestsrv:8053"]
    assert not any("ALWAYS_VALID" in a for a in argv)


def test_port_zero_lets_the_engine_choose():
    argv = acme.pebble_argv(acme.AcmeSpec(prefix="t"))
    assert ["--publish", "127.0.0.1::14000", "--publish", "127.0.0.1::15000"] == argv[-8:-4]


def test_recipe_never_sets_always_valid_and_sets_the_validity_from_env():
    recipe = Path(acme.__file__).parent / "images" / "pebble"
    code = [line for p in recipe.iterdir() for line in p.read_text().splitlines() if not line.startswith("#")]
    assert not [line for line in code if "ALWAYS_VALID" in line]
    assert '"certificateValidityPeriod": 300' in (recipe / "pebble-config.json").read_text()
    assert (recipe / "IMAGE").read_text().strip() == acme.IMAGE


def test_connect_and_directory_url():
    assert acme.connect_argv(SPEC, "cluster-net") == ["docker", "network", "connect", "--alias", "pebble",
                                                      "cluster-net", "t-pebble"]
    assert acme.directory_url(14000) == "https://127.0.0.1:14000/dir"
    assert acme.directory_url(14000, "pebble") == "https://pebble:14000/dir"


@pytest.mark.parametrize("change,message", [
    ({"http_port": 0}, "http_port: 0 is not a TCP port (1-65535)"),
    ({"api_port": 70000}, "api_port: 70000 is not a TCP port (1-65535, or 0)"),
    ({"target_ipv4": "node1"}, "target_ipv4: 'node1' is not an IPv4 address like 172.17.0.1"),
    ({"validity": 5}, "validity: 5 s is outside 30 s .. 90 days"),
    ({"nonce_reject": 101}, "nonce_reject: 101 is not a percentage"),
    ({"tls_names": ("ok.test", "a b")}, "tls_names: 'a b' is not a host name or an IPv4 address"),
    ({"tls_names": ("-x",)}, "tls_names: '-x' is not a host name or an IPv4 address"),
])
def test_problems(change, message):
    assert acme.problems(acme.AcmeSpec(**change)) == [message]


def test_bad_spec_stops_ensure_before_any_command():
    ctx = ScriptedCtx({})
    with pytest.raises(ToolkitError) as exc:
        acme.ensure(Runner(ctx=ctx, echo=False), acme.AcmeSpec(validity=1, http_port=0))
    assert str(exc.value) == ("lab ACME CA: http_port: 0 is not a TCP port (1-65535); "
                              "validity: 1 s is outside 30 s .. 90 days")
    assert ctx.ran == []


def test_lab_spec_default_dir_has_fixed_names_and_ports(monkeypatch):
    monkeypatch.delenv(acme.ENV_PORT, raising=False)
    spec = acme.lab_spec(str(acme.DEFAULT_DIR))
    assert (spec.pebble, spec.challtestsrv, spec.network) == ("djdeploy-lab-pebble", "djdeploy-lab-challtestsrv",
                                                              "djdeploy-lab-acme")
    assert (spec.api_port, spec.mgmt_port, spec.dns_mgmt_port, spec.http_port) == (14000, 14001, 14002, 8080)
    assert spec.labels == (("djdeploy.lab", str(acme.DEFAULT_DIR)),)


def test_lab_spec_of_another_lab_dir_never_collides(monkeypatch):
    monkeypatch.delenv(acme.ENV_PORT, raising=False)
    a, b = acme.lab_spec("/tmp/lab-a"), acme.lab_spec("/tmp/lab-b")
    assert re.fullmatch(r"djdeploy-lab-[0-9a-f]{8}-pebble", a.pebble) and a.pebble != b.pebble
    assert (a.api_port, a.mgmt_port, a.dns_mgmt_port) == (0, 0, 0)
    monkeypatch.setenv(acme.ENV_PORT, "24000")
    assert acme.lab_spec("/tmp/lab-a").api_port == 24000


@dataclass
class Result:
    stdout: str = ""
    stderr: str = ""
    exited: int = 0


class ScriptedCtx:
    """An Invoke-like context: the first regex in ``script`` matching a command gives its result."""

    def __init__(self, script: dict):
        self.script, self.ran = script, []

    def run(self, command, **kwargs):
        self.ran.append(command)
        for pattern, result in self.script.items():
            if re.search(pattern, command):
                return result
        return Result()


ROOT_PEM = "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"


def test_ensure_starts_what_is_missing_and_keeps_a_running_pebble(monkeypatch):
    monkeypatch.setattr(acme, "_answers", lambda runner, spec, port: True)
    ctx = ScriptedCtx({r"network inspect --format": Result("172.20.0.1\n"),
                       r"^docker network inspect t-acme": Result(exited=1),
                       r"container inspect .* t-challtestsrv": Result(exited=1),
                       r"container inspect .* t-pebble": Result("true\n"),
                       r"docker port t-pebble 14000/tcp": Result("127.0.0.1:14000\n")})
    said = []
    record = acme.ensure(Runner(ctx=ctx, echo=False), SPEC, say=said.append)
    assert record == {"network": "t-acme", "containers": ["t-challtestsrv", "t-pebble"], "target_ipv4": "172.20.0.1",
                      "http_port": 8080, "directory": "https://127.0.0.1:14000/dir"}
    runs = [c for c in ctx.ran if c.startswith("docker run") or c.startswith("docker network create")]
    assert runs[0].startswith("docker network create") and "pebble-challtestsrv -defaultIPv4 172.20.0.1" in runs[1]
    assert len(runs) == 2 and said == ["started t-challtestsrv (djdeploy-lab/pebble:2.6)"]


def test_ensure_restarts_a_stopped_container_instead_of_replacing_it(monkeypatch):
    monkeypatch.setattr(acme, "_answers", lambda runner, spec, port: True)
    ctx = ScriptedCtx({r"container inspect .* t-pebble": Result("false\n"),
                       r"container inspect .* t-challtestsrv": Result("true\n"),
                       r"docker port": Result("127.0.0.1:14000\n"), r"--format .*Gateway": Result("10.0.0.1\n")})
    acme.ensure(Runner(ctx=ctx, echo=False), SPEC, say=lambda line: None)
    assert "docker start t-pebble" in ctx.ran and not any(c.startswith("docker run") for c in ctx.ran)


def test_api_root_of_a_missing_pebble_is_a_one_line_error():
    ctx = ScriptedCtx({r"docker exec": Result(stderr="No such container", exited=1)})
    with pytest.raises(ToolkitError) as exc:
        acme.api_root_pem(Runner(ctx=ctx, echo=False), SPEC)
    assert str(exc.value) == "the lab ACME CA (t-pebble) is not running; run `inv lab.up --deploy`"
    ctx = ScriptedCtx({r"docker exec t-pebble cat /run/pebble/tls/root.pem": Result(ROOT_PEM)})
    assert acme.api_root_pem(Runner(ctx=ctx, echo=False), SPEC) == ROOT_PEM


def test_status_row_down_and_up():
    down = ScriptedCtx({r"container inspect": Result(exited=1)})
    assert acme.status_row(Runner(ctx=down, echo=False), SPEC) == (
        "acme", False, "DOWN: t-pebble / t-challtestsrv not running (`inv lab.up --deploy` starts them)")
    up = ScriptedCtx({r"container inspect": Result("true\n"), r"docker port": Result("127.0.0.1:14000\n")})
    assert acme.status_row(Runner(ctx=up, echo=False), SPEC) == (
        "acme", True, "Pebble at https://127.0.0.1:14000/dir (HTTP-01 on port 8080, 300s certificates)")


def test_state_records_the_acme_ca():
    st = state.merge(state.load(Path("/nonexistent/state.json")), acme={"network": "n", "containers": ["a"]})
    assert st["acme"] == {"network": "n", "containers": ["a"]}


def test_browser_tools_are_installed_only_when_missing():
    facts = host.HostFacts(is_root=True, os_ids=("debian",), commands=frozenset({"chromium", "certutil"}))
    assert host.missing_test_tools(facts) == ["chromium-driver", "testssl.sh", "wrk"]
    assert host.missing_test_tools(host.HostFacts(True, ("debian",), frozenset(host.TEST_TOOLS))) == []


def test_browser_harness_flags_and_nss_commands():
    from tests.browser import chromium_flags, nssdb_argvs

    assert chromium_flags("/p", ("a.test", "b.test")) == [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
        "--window-size=1280,900", "--user-data-dir=/p",
        "--host-resolver-rules=MAP a.test 127.0.0.1, MAP b.test 127.0.0.1"]
    assert chromium_flags("/p")[-1] == "--user-data-dir=/p"
    assert nssdb_argvs("/h/.pki/nssdb", "/h/ca.pem") == [
        ["certutil", "-N", "-d", "sql:/h/.pki/nssdb", "--empty-password"],
        ["certutil", "-A", "-d", "sql:/h/.pki/nssdb", "-n", "djdeploy-lab-ca", "-t", "C,,", "-i", "/h/ca.pem"]]


def test_disconnect_argv():
    assert acme.disconnect_argv(SPEC, "ov") == ["docker", "network", "disconnect", "ov", "t-pebble"]


def test_a_foreign_process_on_the_acme_port_is_a_one_line_error(monkeypatch):
    from deploy.lab import procs, provision

    monkeypatch.delenv(acme.ENV_PORT, raising=False)
    monkeypatch.setattr(provision, "LAB_ID", str(acme.DEFAULT_DIR))
    monkeypatch.setattr(procs, "port_answers", lambda host, port, timeout=0.5: port == 14000)
    monkeypatch.setattr(procs, "port_owner", lambda port: "nginx (pid 42)")
    ctx = ScriptedCtx({r"container inspect": Result(exited=1)})
    with pytest.raises(ToolkitError) as exc:
        provision.check_acme_port(Runner(ctx=ctx, echo=False))
    assert str(exc.value) == ("port 14000 on 127.0.0.1 is taken by nginx (pid 42), so the lab ACME CA "
                              "(127.0.0.1:14000) cannot listen there; stop that process or set "
                              "DJDEPLOY_LAB_ACME_PORT to a free port")
    running = ScriptedCtx({r"container inspect": Result("true\n")})
    provision.check_acme_port(Runner(ctx=running, echo=False))  # our own Pebble answering: fine


def test_entrypoint_names_ipv4_entries_as_ip_sans_in_the_api_certificate(tmp_path):
    import ipaddress
    import shutil
    import subprocess

    from cryptography import x509

    if not shutil.which("openssl"):
        pytest.skip("needs openssl")
    script = Path(acme.__file__).parent / "images" / "pebble" / "pebble-entrypoint.sh"
    # Only the certificate step matters here: the config step after it needs the image's /etc/pebble (absent).
    subprocess.run(["sh", str(script), "pebble"], env={"PATH": "/usr/bin:/bin", "PEBBLE_TLS_DIR": str(tmp_path),
                                                       "PEBBLE_TLS_NAMES": "t-pebble,172.30.200.5"},
                   capture_output=True, timeout=60)
    cert = x509.load_pem_x509_certificate((tmp_path / "cert.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "pebble", "t-pebble"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"),
                                                       ipaddress.ip_address("172.30.200.5")]
