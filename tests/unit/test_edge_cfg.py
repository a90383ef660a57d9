"""deploy.ship.edge_cfg: the front proxy's configuration, exact lines for each TLS mode."""

from types import SimpleNamespace

from deploy.ship import edge_cfg


def cfg(**over):
    base = dict(stack_name="shop", tls_mode="acme", tls=True, https_port=443, hsts_max_age=3600,
                hsts_include_subdomains=False, hsts_preload=False, cert_sync_interval=10, replicas=3,
                health_host="shop.example.com", trusted_lb="", proxy=True, publish_mode="ingress")
    base.update(over)
    return SimpleNamespace(**base)


def section(text: str, head: str) -> list[str]:
    """The lines of the section starting with ``head`` (up to the next blank line)."""
    lines = text.splitlines()
    start = lines.index(head)
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


def test_tls_global_section_is_mozilla_intermediate_with_an_admin_socket():
    assert section(edge_cfg.render(cfg()), "global") == [
        "global",
        "    log stdout format raw local0 notice",
        "    maxconn 4096",
        "    hard-stop-after 20s",
        "    stats socket /tmp/edge/admin.sock mode 600 level admin expose-fd listeners",
        "    server-state-file /tmp/edge/server-state",
        "    ssl-default-bind-curves X25519:prime256v1:secp384r1",
        "    ssl-default-bind-ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
        "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:"
        "ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305",
        "    ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256",
        "    ssl-default-bind-options prefer-client-ciphers no-sslv3 no-tlsv10 no-tlsv11 no-tls-tickets",
        "    tune.ssl.default-dh-param 2048",
    ]


def test_http_frontend_redirects_everything_but_the_acme_challenge():
    assert section(edge_cfg.render(cfg()), "frontend http") == [
        "frontend http",
        "    bind :8080",
        "    acl acme_challenge path_beg /.well-known/acme-challenge/",
        "    http-request redirect location https://%[req.hdr(host),field(1,:)]%[url] code 301 unless acme_challenge",
        "    use_backend certs if acme_challenge",
    ]


def test_the_redirect_names_a_non_default_https_port():
    text = edge_cfg.render(cfg(https_port=8443))
    assert ("    http-request redirect location https://%[req.hdr(host),field(1,:)]:8443%[url] code 301 "
            "unless acme_challenge") in text.splitlines()


def test_https_frontend_tls_h2_forwarded_proto_and_hsts():
    assert section(edge_cfg.render(cfg()), "frontend https") == [
        "frontend https",
        "    bind :8443 ssl crt /tmp/edge/site.pem alpn h2,http/1.1",
        "    no option http-server-close",
        "    tcp-request inspect-delay 2s",
        "    tcp-request content accept if { nbsrv(app) gt 0 } { nbsrv(static) gt 0 } || { nbsrv(maintenance) gt 0 }",
        "    tcp-request content accept if WAIT_END",
        "    http-request set-header X-Forwarded-Proto https",
        "    http-request disable-l7-retry if !METH_GET !METH_HEAD",
        '    http-response set-header Strict-Transport-Security "max-age=3600"',
        "    use_backend maintenance if { nbsrv(maintenance) gt 0 } !{ path_beg /health/ }",
        r"    acl hashed_static path_reg ^/static/.+\.[0-9a-f]{12}\.[A-Za-z0-9]+$",
        "    use_backend static if hashed_static { method GET HEAD }",
        "    default_backend app",
    ]


def test_hsts_include_subdomains_and_preload_only_when_asked():
    assert edge_cfg.hsts(cfg()) == "max-age=3600"
    assert edge_cfg.hsts(cfg(hsts_include_subdomains=True, hsts_max_age=600)) == "max-age=600; includeSubDomains"
    assert edge_cfg.hsts(cfg(hsts_include_subdomains=True, hsts_preload=True, hsts_max_age=31536000)) == \
        "max-age=31536000; includeSubDomains; preload"


def test_certificate_sync_program_and_certs_backend():
    text = edge_cfg.render(cfg(cert_sync_interval=2))
    assert section(text, "program certsync") == [
        "program certsync",
        "    command edge-agent sync --from http://tasks.certs:8081/bundle --cert /tmp/edge/site.pem "
        "--socket /tmp/edge/admin.sock --interval 2 --config-from http://tasks.certs:8081/haproxy.cfg "
        "--config /tmp/edge/haproxy.cfg --state-file /tmp/edge/server-state",
    ]
    assert section(text, "backend certs") == [
        "backend certs",
        "    default-server init-addr last,none resolvers docker resolve-prefer ipv4",
        '    server-template certs 2 "tasks.certs:8081"',
    ]


def test_app_backend_finds_tasks_by_dns_with_health_checks_and_retries():
    text = edge_cfg.render(cfg())
    assert section(text, "backend app") == [
        "backend app",
        "    balance roundrobin",
        "    option httpchk",
        '    http-check send meth GET uri /health/ ver HTTP/1.1 hdr Host "shop.example.com"',
        "    http-check expect status 200",
        "    default-server check inter 1s fastinter 500ms downinter 1s fall 1 rise 1 tcp-ut 3s init-addr last,none "
        "resolvers docker resolve-prefer ipv4",
        '    server-template app 8 "tasks.app:8000"',
    ]
    for line in ("    retries 3", "    option redispatch 1", "    retry-on conn-failure empty-response 503",
                 "    nameserver dns 127.0.0.11:53"):
        assert line in text.splitlines()


def test_a_request_to_a_crashed_node_fails_its_connection_in_3_s_and_a_get_is_retried():
    """A vanished node sends no RST: TCP keepalives (1 s idle, 1 s apart, 2 probes) and a 3 s TCP user timeout
    on every app server end the connection in ~3 s; the read error is an empty-response (L7 retry of GET/HEAD
    only: the frontends disable it for other methods). Slow live requests keep the 60 s server timeout."""
    text = edge_cfg.render(cfg())
    defaults = section(text, "defaults")
    for line in ("    option srvtcpka", "    srvtcpka-idle 1s", "    srvtcpka-intvl 1s", "    srvtcpka-cnt 2",
                 "    timeout server 60s", "    timeout connect 2s", "    retries 3", "    option redispatch 1",
                 "    retry-on conn-failure empty-response 503"):
        assert line in defaults, line
    assert [line for line in defaults if not line.lstrip().startswith("#")][-6:-2] == [
        "    option srvtcpka", "    srvtcpka-idle 1s", "    srvtcpka-intvl 1s", "    srvtcpka-cnt 2"]
    servers = [line for line in text.splitlines() if line.startswith("    default-server check")]
    assert len(servers) == 3 and all(" tcp-ut 3s " in line for line in servers[:2]), servers  # app, static
    settings = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for absent in ("response-timeout", "set-timeout", "shutdown-sessions"):  # they would cut or fail slow requests
        assert absent not in settings, absent
    assert text.count("    http-request disable-l7-retry if !METH_GET !METH_HEAD") == 1  # the https frontend


def test_the_plain_example_config_has_the_same_defaults_and_app_servers_as_the_rendered_one():
    from deploy.ship.stackfile import PROXY_CFG

    example, rendered = PROXY_CFG.read_text(), edge_cfg.render(cfg())
    reload_lines = edge_cfg.RELOAD_DEFAULTS.splitlines()   # the example is not reloaded (no state file)
    assert section(example, "defaults") + reload_lines == section(rendered, "defaults")
    assert example.count(edge_cfg.APP_DEFAULT_SERVER + "\n") == 2


def test_the_load_generator_waits_longer_than_the_proxy_retries_a_get_from_a_crashed_node():
    """Budget: 3 s to find the dead connection + up to 3 retries' connects (2 s) < the client's 10 s timeout."""
    import inspect
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from loadgen import LoadGenerator

    timeout = inspect.signature(LoadGenerator).parameters["timeout"].default
    assert 3 + 3 * 2 < timeout == 10.0


def test_hashed_static_names_go_to_a_static_backend_that_retries_a_404_on_another_task():
    """During a rollout a task of the other release lacks a page's hashed files: a 404 is retried (redispatched to
    another task, defaults' `option redispatch 1`) up to once per slot; a final 404 is never stored by a cache.
    Only this backend pools its server connections (defaults' http-server-close, which the frontends turn off)."""
    text = edge_cfg.render(cfg())
    assert section(text, "backend static") == [
        "backend static",
        "    retries 8",
        "    retry-on conn-failure empty-response 503 404",
        "    http-response set-header Cache-Control no-store if { status 404 }",
        "    no option http-server-close",
        "    http-reuse aggressive",
        *section(text, "backend app")[1:],
    ]
    import re

    rule = next(line for line in text.splitlines() if "acl hashed_static" in line).split("path_reg ", 1)[1]
    for path in ("/static/notes/app.285dab6fbbcf.css", "/static/admin/js/core.0123456789ab.js"):
        assert re.search(rule, path), path
    for path in ("/static/notes/app.css", "/", "/static/app.285dab6fbbcf", "/x/static/a.285dab6fbbcf.css"):
        assert not re.search(rule, path), path


def test_the_plain_example_config_routes_hashed_static_names_like_the_rendered_one():
    """deploy/ship/proxy/haproxy.cfg (the plain path) is kept in step with the rendered config."""
    from deploy.ship.stackfile import PROXY_CFG

    example, rendered = PROXY_CFG.read_text().splitlines(), edge_cfg.render(cfg()).splitlines()
    for line in (edge_cfg.STATIC_RULE.splitlines() + ["    retry-on conn-failure empty-response 503 404",
                                                        "    http-response set-header Cache-Control no-store if { status 404 }"]):
        assert line in example and line in rendered, line
    assert '    retries "${APP_SLOTS}"' in example and "backend static" in example


def test_acme_and_files_render_the_same_text():
    """Switching the source of certificates must not restart a proxy (its config is unchanged)."""
    assert edge_cfg.render(cfg(tls_mode="acme")) == edge_cfg.render(cfg(tls_mode="files"))


def test_external_mode_is_http_only_and_keeps_forwarded_proto_from_the_load_balancers_only():
    text = edge_cfg.render(cfg(tls_mode="external", tls=False, trusted_lb="10.1.0.0/16, 192.0.2.7"))
    assert section(text, "frontend web") == [
        "frontend web",
        "    bind :8080",
        "    no option http-server-close",
        "    tcp-request inspect-delay 2s",
        "    tcp-request content accept if { nbsrv(app) gt 0 } { nbsrv(static) gt 0 } || { nbsrv(maintenance) gt 0 }",
        "    tcp-request content accept if WAIT_END",
        "    http-request disable-l7-retry if !METH_GET !METH_HEAD",
        "    acl from_lb src 10.1.0.0/16 192.0.2.7",
        "    http-request set-header X-Forwarded-Proto http if !from_lb || !{ req.hdr(x-forwarded-proto) -m found }",
        "    use_backend maintenance if { nbsrv(maintenance) gt 0 } !{ path_beg /health/ }",
        r"    acl hashed_static path_reg ^/static/.+\.[0-9a-f]{12}\.[A-Za-z0-9]+$",
        "    use_backend static if hashed_static { method GET HEAD }",
        "    default_backend app",
    ]
    for absent in ("ssl", "--from", "--cert", "backend certs", "Strict-Transport-Security"):
        assert absent not in text
    assert section(text, "program certsync")[1] == (   # the configuration only: no certificate here
        "    command edge-agent sync --socket /tmp/edge/admin.sock --interval 10 --config-from "
        "http://tasks.certs:8081/haproxy.cfg --config /tmp/edge/haproxy.cfg --state-file /tmp/edge/server-state")


def test_the_proxy_reloads_from_the_saved_server_state_and_answers_idle_clients_once_more():
    """A new configuration is a master-worker reload: the listeners pass to the new worker (expose-fd), which
    starts with the servers' addresses and health from the state file (init-addr last), and the old worker lets
    an idle kept-alive client send one more request instead of closing under it."""
    text = edge_cfg.render(cfg())
    assert "    stats socket /tmp/edge/admin.sock mode 600 level admin expose-fd listeners" in section(text, "global")
    assert "    server-state-file /tmp/edge/server-state" in section(text, "global")
    assert section(text, "defaults")[-2:] == ["    load-server-state-from-file global",
                                              "    option idle-close-on-response"]
    assert all("init-addr last,none " in line for line in text.splitlines() if "init-addr" in line)
    plain = edge_cfg.render(cfg(tls_mode="external", tls=False))   # the same reload without TLS at the proxy
    assert section(plain, "global")[4:6] == section(text, "global")[4:6]
    assert section(plain, "defaults") == section(text, "defaults")


def test_with_host_mode_ports_the_proxy_also_listens_on_the_relays_unix_sockets_and_has_a_handoff_socket():
    text = edge_cfg.render(cfg(publish_mode="host"))
    assert section(text, "frontend http")[:3] == [
        "frontend http",
        "    bind :8080",
        "    bind unix@/var/lib/haproxy/http.sock mode 600 accept-proxy",
    ]
    assert section(text, "frontend https")[:3] == [
        "frontend https",
        "    bind :8443 ssl crt /tmp/edge/site.pem alpn h2,http/1.1",
        "    bind unix@/var/lib/haproxy/https.sock mode 600 accept-proxy ssl crt /tmp/edge/site.pem alpn h2,http/1.1",
    ]
    assert "    stats socket /var/lib/haproxy/handoff.sock mode 600 level operator" in section(text, "global")
    plain = edge_cfg.render(cfg(publish_mode="host", tls=False, tls_mode="external"))
    assert section(plain, "frontend web")[:3] == [
        "frontend web", "    bind :8080", "    bind unix@/var/lib/haproxy/http.sock mode 600 accept-proxy"]
    assert "unix@" not in edge_cfg.render(cfg()) and "handoff" not in edge_cfg.render(cfg())   # ingress: no relay


def test_a_request_that_finds_no_app_server_waits_for_one_up_to_2_s_instead_of_a_503():
    for text in (edge_cfg.render(cfg()), edge_cfg.render(cfg(tls=False, tls_mode="external"))):
        front = section(text, "frontend https" if "frontend https" in text else "frontend web")
        assert front.index("    tcp-request content accept if WAIT_END") == front.index("    tcp-request inspect-delay 2s") + 2
    assert "inspect-delay" not in "\n".join(section(edge_cfg.render(cfg()), "frontend http"))   # redirects, challenges
