"""deploy.ship.edge_stack / edge_steps / edge_image: the TLS edge in the stack spec, the certificate wait's verdicts,
the exact remote commands, and the edge image's recipe tag."""

import hashlib
import json

import pytest

from deploy.ship import edge_image, edge_stack, edge_steps, stackfile
from test_swarm import cfg as plain_cfg

CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def cfg(**over):
    base = dict(tls_mode="acme", tls=True, https_port=8443, publish_mode="host", endpoint_mode="dnsrr",
                acme_directory="https://ca.example/dir", acme_email="ops@example.com", acme_ca_root="",
                acme_network="", edge_image="djedge", django_allowed_hosts="shop.example.com,www.example.com",
                converge_timeout=300)
    base.update(over)
    return plain_cfg(**base)


def spec(c):
    return stackfile.stack_spec(c, "i", "t", "r", "shop_haproxy_1")


def test_proxy_becomes_the_edge_image_with_http_and_https_ports_on_both_networks():
    proxy = spec(cfg(publish_mode="ingress"))["services"]["proxy"]
    assert proxy["image"] == edge_image.ref(cfg()) and proxy["image"].startswith("reg.example.com/djedge:e")
    assert proxy["ports"] == [{"target": 8080, "published": 80, "protocol": "tcp", "mode": "ingress"},
                              {"target": 8443, "published": 8443, "protocol": "tcp", "mode": "ingress"}]
    assert proxy["networks"] == ["backend", "edge"]
    assert proxy["environment"] == {"CERTS_URL": "http://tasks.certs:8081/bundle",
                                    "CONFIG_URL": "http://tasks.certs:8081/haproxy.cfg"}
    assert proxy["healthcheck"] == {"test": ["CMD", "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080"], "interval": "5s",
                                    "timeout": "3s", "retries": 3, "start_period": "130s"}
    assert "configs" not in proxy   # a configuration change never changes the proxy's spec: it reloads
    assert proxy["deploy"]["mode"] == "global"


def test_certs_service_one_replica_on_a_manager_with_its_volume_on_the_edge_network_only():
    s = spec(cfg(acme_ca_root=CERT, acme_network="lab-acme"))
    certs = s["services"]["certs"]
    assert certs["command"] == ["edge-agent", "certs", "--mode", "acme", "--haproxy-cfg", "/etc/edge/haproxy.cfg"]
    assert certs["configs"] == [{"source": "haproxy_cfg", "target": "/etc/edge/haproxy.cfg"}]
    assert s["configs"] == {"haproxy_cfg": {"name": "shop_haproxy_1", "file": "/var/lib/djdeploy/shop/haproxy.cfg"}}
    assert certs["environment"] == {"CERTS_CONFIG_ID": edge_stack.config_id(cfg()), "CERT_NAMES":
                                    "shop.example.com,www.example.com", "ACME_DIRECTORY": "https://ca.example/dir",
                                    "ACME_EMAIL": "ops@example.com", "ACME_CA_ROOT_FILE": "/run/secrets/acme_ca_root"}
    assert certs["secrets"] == [{"source": "acme_ca_root", "target": "acme_ca_root"}]
    assert certs["volumes"] == ["certs:/var/lib/edge", {"type": "tmpfs", "target": "/tmp", "tmpfs": {"size": 67108864}}]
    assert s["volumes"]["certs"] == {}
    assert (certs["read_only"], certs["cap_drop"]) == (True, ["ALL"])  # hardened like the proxy, with its limits
    assert certs["deploy"]["resources"] == {"limits": {"memory": "256M", "cpus": "0.5", "pids": 128}}
    assert certs["networks"] == ["edge", "acme"]
    assert s["networks"]["edge"] == {"driver": "overlay"}
    assert s["networks"]["acme"] == {"external": True, "name": "lab-acme"}
    assert certs["deploy"]["replicas"] == 1 and certs["deploy"]["update_config"]["order"] == "stop-first"
    assert certs["deploy"]["placement"] == {"constraints": ["node.role == manager"]}
    assert "edge" not in s["services"]["app"]["networks"]  # the app can never fetch the private key


def test_files_mode_secrets_are_versioned_and_only_the_certs_service_sees_them():
    c = cfg(tls_mode="files", tls_cert=CERT, tls_key="KEY-PEM")
    s = spec(c)
    assert s["services"]["certs"]["secrets"] == [{"source": "tls_cert", "target": "tls_cert"},
                                                 {"source": "tls_key", "target": "tls_key"}]
    names = stackfile.secret_names(c)
    assert names["tls_key"].startswith("shop_tls_key_") and "KEY-PEM" not in json.dumps(s)
    rotated = stackfile.secret_names(cfg(tls_mode="files", tls_cert=CERT, tls_key="OTHER-KEY"))
    assert rotated["tls_key"] != names["tls_key"] and rotated["tls_cert"] == names["tls_cert"]
    assert "CERT_NAMES" not in s["services"]["certs"]["environment"]
    assert edge_stack.config_id(c) != edge_stack.config_id(cfg(tls_mode="files", tls_cert=CERT + "x"))


def test_app_env_trusts_the_stack_network_via_its_env_file_and_knows_its_origins():
    app = spec(cfg())["services"]["app"]
    assert app["env_file"] == ["/var/lib/djdeploy/shop/trusted-proxy.env"]
    assert "DJANGO_TRUSTED_PROXY" not in app["environment"]
    assert app["environment"]["DJANGO_CSRF_TRUSTED_ORIGINS"] == "https://shop.example.com:8443,https://www.example.com:8443"
    assert app["environment"]["DJANGO_HSTS_SECONDS"] == "3600"
    assert edge_stack.csrf_origins(cfg(https_port=443, django_allowed_hosts=".example.com,a.b")) == \
        "https://*.example.com,https://a.b"


def test_external_mode_has_no_certificate_only_the_proxies_configuration_and_proxy_off_trusts_the_load_balancers():
    s = spec(cfg(tls_mode="external", tls=False, trusted_lb="10.1.0.0/16"))
    certs, proxy = s["services"]["certs"], s["services"]["proxy"]
    assert certs["command"] == ["edge-agent", "certs", "--mode", "external", "--haproxy-cfg", "/etc/edge/haproxy.cfg"]
    assert certs["secrets"] == [] and "CERT_NAMES" not in certs["environment"] and certs["networks"] == ["edge"]
    assert proxy["image"] == edge_image.ref(cfg()) and proxy["environment"] == {
        "CONFIG_URL": "http://tasks.certs:8081/haproxy.cfg", "EDGE_HANDOFF": "/var/lib/haproxy/handoff.sock"}
    assert "https" not in s["services"]["relay"]["environment"]["RELAY_CFG"]   # HTTP only: TLS ended at the load balancer
    app = spec(cfg(tls_mode="external", tls=False, trusted_lb="10.1.0.0/16", proxy=False))["services"]["app"]
    assert app["environment"]["DJANGO_TRUSTED_PROXY"] == "10.1.0.0/16" and "env_file" not in app


def test_remote_commands_exact():
    assert edge_stack.trusted_proxy_cmd(cfg(), "shop_backend") == [
        "sh", "-c", 'set -e; umask 077; s="$(docker network inspect --format "{{range .IPAM.Config}}{{.Subnet}},{{end}}" '
        '"$1")"; [ -n "$s" ]; printf "DJANGO_TRUSTED_PROXY=%s\\n" "${s%,}" > "$2"',
        "trusted-proxy", "shop_backend", "/var/lib/djdeploy/shop/trusted-proxy.env"]
    assert edge_stack.certs_status_cmd(cfg()) == [
        "sh", "-c", 'c="$(docker ps -q --filter "label=com.docker.swarm.service.name=$1" --filter status=running '
        '| head -n 1)"; [ -n "$c" ] || { echo "no running task of $1 on this node" >&2; exit 3; }; '
        'exec docker exec "$c" edge-agent status', "certs-status", "shop_certs"]


def status(c, **over):
    s = {"config_id": edge_stack.config_id(c), "valid": False, "error": "", "failures": 0, "serial": "ab",
         "names": ["shop.example.com", "www.example.com"]}
    s.update(over)
    return s


@pytest.mark.parametrize("over,verdict", [
    ({"config_id": "old"}, ("wait", "the certs service has not started this configuration yet")),
    ({}, ("wait", "the certs service is getting its first certificate")),
    ({"valid": True}, ("ok", "serving certificate serial ab (shop.example.com,www.example.com)")),
    ({"valid": True, "error": "boom"}, ("warn", "serving certificate serial ab (shop.example.com,www.example.com); "
                                                "its renewal is failing and is retried: boom")),
    ({"error": "rateLimited", "failures": 1}, ("wait", "the certs service retries after: rateLimited")),
    ({"error": "urn:ietf:params:acme:error:rateLimited: too many", "failures": 2},
     ("fail", "no valid certificate for shop.example.com,www.example.com from https://ca.example/dir: "
              "urn:ietf:params:acme:error:rateLimited: too many")),
])
def test_certificate_wait_verdicts(over, verdict):
    assert edge_steps.verdict(cfg(), status(cfg(), **over)) == verdict


def test_unreadable_status_is_waited_for():
    assert edge_steps.parse_status("no such container") is None
    assert edge_steps.verdict(cfg(), None)[0] == "wait"


def test_edge_image_tag_follows_the_recipe_and_the_proxy_image(tmp_path):
    for name in edge_image.FILES:
        (tmp_path / name).write_text(name)
    tag = edge_image.recipe_tag("haproxy:3.0-trixie", tmp_path)
    assert tag.startswith("e") and len(tag) == 13
    assert edge_image.recipe_tag("haproxy:3.0", tmp_path) != tag
    (tmp_path / "edge-agent").write_text("changed")
    assert edge_image.recipe_tag("haproxy:3.0-trixie", tmp_path) != tag


def test_plan_has_the_edge_steps_in_order(tmp_path):
    from deploy.ship import plan
    from shipfakes import make_cfg

    assert make_cfg(tmp_path).tls_mode == "external"  # the fakes' environment; turned into an acme one:
    (tmp_path / "lab.env").write_text((tmp_path / "lab.env").read_text().replace(
        "TLS_MODE=external", "TLS_MODE=acme").replace("DJANGO_ALLOWED_HOSTS=127.0.0.1", "DJANGO_ALLOWED_HOSTS=djlab.test"))
    from deploy.ship.config import load

    c = load("lab", env_dir=tmp_path, environ={})
    rel = plan.Release(action="deploy", tag="v2", build=True, migrate=True, dirty=False, owner="me\n", stamp="T")
    whats = [s.what for s in plan.build_deploy_plan(c, rel, plan.EnvState(), "global\n").steps]
    edge = next(i for i, w in enumerate(whats) if w.startswith("the edge image"))
    certs = next(i for i, w in enumerate(whats) if w.startswith("until djt_certs serves a valid certificate"))
    migrate = next(i for i, w in enumerate(whats) if w.startswith("migrate the database"))
    base = next(i for i, w in enumerate(whats) if w == "deploy db and proxy and certs and relay")
    assert edge < base < certs < migrate


def test_the_deploy_waits_until_every_running_proxy_reports_this_deploys_configuration():
    from deploy.ship import edge_steps

    c = cfg(cert_sync_interval=2)
    want = edge_steps.proxy_config_id("global\n")
    assert want == hashlib.sha256(b"global\n").hexdigest()[:16]
    fresh, stale = {"config": want, "age": 1.0}, {"config": "0ld", "age": 99.0}
    assert edge_steps.proxies_verdict(c, want, None, 1) == (
        "wait", f"the certs service does not serve configuration {want} yet")
    assert edge_steps.proxies_verdict(c, want, {"proxy_config": "0ld", "proxies": {}}, 1)[0] == "wait"
    status = {"proxy_config": want, "proxies": {"a": fresh, "b": {"config": "0ld", "age": 2.0}, "c": stale}}
    assert edge_steps.proxies_verdict(c, want, status, 2) == (
        "wait", f"1 of 2 proxies run configuration {want} (b runs 0ld)")
    status["proxies"]["b"] = dict(fresh)
    assert edge_steps.proxies_verdict(c, want, status, 2) == ("ok", f"2 of 2 proxies run configuration {want}")
    assert edge_steps.proxies_verdict(c, want, status, 0)[0] == "wait"   # no running proxy task counted yet


def test_the_proxies_status_command_counts_running_proxy_tasks_then_asks_the_certs_service():
    assert edge_stack.proxies_status_cmd(cfg()) == [
        "sh", "-c", 'docker service ps --filter desired-state=running --format "{{.CurrentState}}" "$1" '
        '| grep -c "^Running"; c="$(docker ps -q --filter "label=com.docker.swarm.service.name=$2" '
        '--filter status=running | head -n 1)"; [ -n "$c" ] || { echo "no running task of $2 on this node" >&2; '
        'exit 3; }; exec docker exec "$c" edge-agent status', "proxies-status", "shop_proxy", "shop_certs"]


def test_the_proxy_updates_start_first_in_both_modes_and_host_mode_ports_are_the_relays():
    assert spec(cfg())["services"]["proxy"]["deploy"]["update_config"]["order"] == "start-first"
    assert spec(cfg(publish_mode="ingress"))["services"]["proxy"]["deploy"]["update_config"]["order"] == "start-first"
    host = spec(cfg())["services"]
    assert "ports" not in host["proxy"] and "relay" in host and "relay" not in spec(cfg(publish_mode="ingress"))["services"]
    relay = host["relay"]
    assert relay["deploy"]["update_config"]["order"] == "start-first" and relay["deploy"]["mode"] == "global"
    assert relay["deploy"]["resources"] == {"limits": {"memory": "256M", "cpus": "0.5", "pids": 128}}
    assert (relay["read_only"], relay["cap_drop"], relay["cap_add"]) == (True, ["ALL"], [
        "NET_BIND_SERVICE", "SETGID", "SETUID"])
    assert "bind :80\n" in relay["environment"]["RELAY_CFG"] and "bind :8443\n" in relay["environment"]["RELAY_CFG"]
