"""The relay that publishes host-mode ports in front of the proxy (deploy.ship.edge_relay): exact text and spec."""

from types import SimpleNamespace

from deploy.ship import edge_relay


def cfg(**over):
    base = dict(proxy=True, publish_mode="host", tls=True, published_port=80, https_port=443,
                proxy_image="haproxy:3.0-trixie")
    base.update(over)
    return SimpleNamespace(**base)


def test_the_relay_is_tcp_to_the_proxys_unix_sockets_with_proxy_protocol_and_drops_root_after_binding():
    assert edge_relay.render(cfg()) == (
        "global\n    log stdout format raw local0 notice\n    maxconn 8192\n    user haproxy\n    group haproxy\n"
        "    hard-stop-after 70s\n\n"
        "defaults\n    mode tcp\n    log global\n    timeout connect 2s\n    timeout client 75s\n"
        "    timeout server 75s\n    retries 5\n\n"
        "frontend http\n    bind :80\n    default_backend http\n\n"
        "backend http\n    server proxy unix@/var/lib/haproxy/http.sock send-proxy-v2\n\n"
        "frontend https\n    bind :443\n    default_backend https\n\n"
        "backend https\n    server proxy unix@/var/lib/haproxy/https.sock send-proxy-v2\n")
    assert "https" not in edge_relay.render(cfg(tls=False, published_port=8080))
    assert "bind :8080" in edge_relay.render(cfg(tls=False, published_port=8080))


def test_only_host_mode_ports_with_a_proxy_get_a_relay():
    assert edge_relay.enabled(cfg())
    assert not edge_relay.enabled(cfg(publish_mode="ingress"))
    assert not edge_relay.enabled(cfg(proxy=False))


def test_apply_moves_the_ports_to_a_global_start_first_relay_on_the_host_network():
    spec = {"services": {"proxy": {"ports": [{"target": 8080}], "environment": {}, "volumes": [{"type": "tmpfs"}],
                                   "deploy": {"update_config": {"order": "start-first"}, "mode": "global"}}},
            "networks": {"backend": {}}, "volumes": {}}
    calls = []

    def harden(service, caps=()):
        calls.append(list(caps))
        return dict(service, read_only=True)

    edge_relay.apply(spec, cfg(), harden)
    proxy, relay = spec["services"]["proxy"], spec["services"]["relay"]
    assert "ports" not in proxy
    assert proxy["volumes"] == [{"type": "volume", "source": "sockets", "target": "/var/lib/haproxy"}, {"type": "tmpfs"}]
    assert proxy["environment"] == {"EDGE_HANDOFF": "/var/lib/haproxy/handoff.sock"}
    assert calls == [["NET_BIND_SERVICE", "SETGID", "SETUID"]]
    assert relay["image"] == "haproxy:3.0-trixie" and relay["user"] == "root" and relay["read_only"]
    assert relay["entrypoint"] == ["sh", "-c", 'printf "%s" "$$RELAY_CFG" > /tmp/relay.cfg && '
                                               "exec haproxy -db -f /tmp/relay.cfg"]
    assert relay["environment"] == {"RELAY_CFG": edge_relay.render(cfg())}
    assert relay["networks"] == ["hostnet"] and spec["networks"]["hostnet"] == {"external": True, "name": "host"}
    assert relay["volumes"] == [{"type": "volume", "source": "sockets", "target": "/var/lib/haproxy"}]
    assert relay["stop_signal"] == "SIGUSR1" and relay["stop_grace_period"] == "75s"
    assert relay["healthcheck"]["test"] == ["CMD", "bash", "-c", "grep -qE '^Uid:[[:space:]]+[1-9]' /proc/1/status"
                                            " && exec 3<>/dev/tcp/127.0.0.1/80"]
    assert relay["healthcheck"]["interval"] == "5s"   # an exec per check: not every second (see CHECK_EVERY)
    assert relay["deploy"] == {"update_config": {"order": "start-first"}, "mode": "global"}
    assert spec["volumes"] == {"sockets": {}}
