"""The front proxy's configuration (HAProxy 3.0), rendered from a validated DeployConfig. Pure: text in, text out.

The proxy finds the app's tasks through Docker's DNS (tasks.app), health-checks them with an allowed Host,
and retries a request that meets a task going away on another one (zero-downtime rollouts; a task on a crashed
node is found dead by TCP keepalives in 3 s, DEFAULTS); a hashed static
name that a task answers with 404 (a task of the other release, during a rollout) is retried on another task.
With TLS at the proxy (TLS_MODE acme or files):
  - HTTP (container port 8080) answers 301 to https for every path except /.well-known/acme-challenge/,
    which goes to the certs service (HTTP-01 works whichever node the CA reaches);
  - HTTPS (container port 8443): TLS 1.2+, Mozilla "intermediate" ciphers, HTTP/2, HSTS, and
    X-Forwarded-Proto set by the proxy (a client's value is overwritten);
  - the certificate starts as a placeholder and is installed into the RUNNING process by the sync program
    (edge-agent sync: `set ssl cert` + `commit ssl cert` on the admin socket): renewal without a reload;
  - this configuration itself is served by the certs service (it mounts the versioned Docker config), so a
    change does not touch the proxy service: the sync program fetches it, checks it (`haproxy -c`), saves the
    servers' state and reloads the master seamlessly (the listening sockets pass to the new worker).
TLS_MODE=external: HTTP only; X-Forwarded-Proto is kept from TRUSTED_LB sources and set to http otherwise.
"""

from __future__ import annotations

from deploy.ship import edge_relay

HTTP_PORT, HTTPS_PORT = 8080, 8443       # inside the proxy container
CERTS_PORT = 8081                        # the certs service: challenges, bundle, status
CERT_PATH = "/tmp/edge/site.pem"         # the placeholder at start; replaced in memory by the sync program
ADMIN_SOCKET = "/tmp/edge/admin.sock"
CONFIG_PATH = "/tmp/edge/haproxy.cfg"     # fetched from the certs service (CONFIG_URL) by `edge-agent prepare`
SERVER_STATE = "/tmp/edge/server-state"  # saved before a reload: the new worker starts with known servers
CHALLENGE = "/.well-known/acme-challenge/"
# Mozilla's "intermediate" profile (ssl-config.mozilla.org, guidelines 5.7) for HAProxy.
CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
           "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
           "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305")
CIPHERSUITES = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
TLS_OPTIONS = "prefer-client-ciphers no-sslv3 no-tlsv10 no-tlsv11 no-tls-tickets"

# Maintenance mode (`inv maintenance on` runs service <stack>_maintenance): while it has a healthy task, every
# request but the health check gets its page.
MAINTENANCE_RULE = "    use_backend maintenance if { nbsrv(maintenance) gt 0 } !{ path_beg /health/ }"
# A hashed static name (the entrypoint's `file` route pattern, loosely) read with GET or HEAD goes to the `static`
# backend: the same tasks, but a 404 is retried on another task. During a rollout old and new tasks serve side by
# side, and only the new ones have a new page's files (deploy.image.bridge gives them the old pages' files); a
# miss of such a name is answered with no-store, so no cache keeps it.
HASHED = r"^/static/.+\.[0-9a-f]{12}\.[A-Za-z0-9]+$"
STATIC_RULE = f"    acl hashed_static path_reg {HASHED}\n    use_backend static if hashed_static {{ method GET HEAD }}"
# Server connections: the backend decides. HAProxy applies `http-server-close` when either the frontend or the
# backend has it (defaults give it to both), so the frontends turn it off and every backend but `static` keeps it.
FRONTEND_KEEPALIVE = "    no option http-server-close"
# A new worker (a proxy replaced start-first, or reloaded) can find no app server for a moment: its first DNS
# answers may move an address from one server slot to another (seen in the lab: "0 active ... no server
# available", one 503). A request then waits for a server up to 2 s instead of getting a 503 at once (WAIT_END
# holds the rules until the delay expires; they run again then). An app with no task at all costs each request 2 s.
WAIT_FOR_SERVERS = ("    tcp-request inspect-delay 2s\n"
                    "    tcp-request content accept if { nbsrv(app) gt 0 } { nbsrv(static) gt 0 } || "
                    "{ nbsrv(maintenance) gt 0 }\n"
                    "    tcp-request content accept if WAIT_END")
# `static` pools its server connections: a hashed file is a GET/HEAD of an immutable name, so a request that meets
# a pooled connection closing under it (a draining task, a crashed node) is retried on another task like any
# empty response; one new server connection per static request halved uWSGI's rate behind the proxy
# (BENCHMARKS.md, "Server keep-alive in the proxy"). `aggressive`: an idle connection that has already carried a
# request (the server keeps connections) also serves the first request of another client.
STATIC_POOL = "    no option http-server-close\n    http-reuse aggressive\n"
MAINTENANCE_BACKEND = """backend maintenance
    retry-on conn-failure empty-response
    option httpchk
    http-check send meth GET uri /maintenance-health ver HTTP/1.1 hdr Host maintenance
    http-check expect status 200
    default-server check inter 1s fastinter 500ms downinter 1s fall 1 rise 1 init-addr last,none resolvers docker resolve-prefer ipv4
    server-template maintenance 1 "tasks.maintenance:8080"
"""
# The app's servers: health-checked every second (one failure = DOWN), found by DNS; tcp-ut: see DEFAULTS.
APP_DEFAULT_SERVER = ("    default-server check inter 1s fastinter 500ms downinter 1s fall 1 rise 1 tcp-ut 3s "
                      "init-addr last,none resolvers docker resolve-prefer ipv4")
RESOLVERS = """resolvers docker
    nameserver dns 127.0.0.11:53
    accepted_payload_size 8192
    resolve_retries 3
    timeout resolve 1s
    timeout retry 1s
    hold valid 1s
    hold obsolete 0s
    hold nx 1s
    hold refused 1s
    hold timeout 1s
    hold other 1s
"""
DEFAULTS = """defaults
    mode http
    log global
    option dontlognull
    timeout connect 2s
    timeout client 30s
    timeout server 60s
    timeout http-request 10s
    timeout http-keep-alive 10s
    timeout queue 10s
    # One request per server connection (every backend but `static`, whose GETs of hashed files are retried
    # anyway): a draining task never holds an idle pooled connection, and no POST or page request waits on a
    # pooled connection to a crashed node (BENCHMARKS.md, "Server keep-alive in the proxy").
    option http-server-close
    # A request that cannot reach a task (refused, reset, empty reply, 503 while draining) is
    # retried on another task (redispatch); non-idempotent requests only on connection failure.
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response 503
    # A node that crashes (power loss, kernel panic, `docker kill`) sends no FIN or RST: a request already
    # delivered to one of its tasks would wait for `timeout server` (60 s, kept for slow requests). The
    # kernel finds the dead peer instead, which never cuts a slow request (a live task's kernel answers while
    # its app works): keepalive probes after 1 s of silence, every 1 s, 2 unanswered = dead (3 s), and the
    # servers' `tcp-ut 3s` bounds unacknowledged data the same way. The read error is an empty-response:
    # a GET/HEAD is retried on another task, other methods get a 502 (no replay). Budget: 3 s + the
    # retry's connect (2 s at worst per retry, the dead tasks are DOWN after <= 2 s of health checks)
    # stays under a 10 s client timeout (bench/loadgen.py). Not `on-marked-down shutdown-sessions`:
    # with `fall 1` one slow health check of a live task would abort its in-flight POSTs.
    option srvtcpka
    srvtcpka-idle 1s
    srvtcpka-intvl 1s
    srvtcpka-cnt 2
"""
# The proxy reloads on a new configuration: the new worker starts from the saved state of the servers
# (addresses, health), and the old one answers a kept-alive client's next request (with Connection: close)
# instead of closing its idle connections under the client's feet.
RELOAD_DEFAULTS = """    load-server-state-from-file global
    option idle-close-on-response
"""


def hsts(cfg) -> str:
    value = f"max-age={cfg.hsts_max_age}"
    if cfg.hsts_include_subdomains:
        value += "; includeSubDomains"
    if cfg.hsts_preload:
        value += "; preload"
    return value


def redirect_location(cfg) -> str:
    """https on the same host name (the client's port dropped), on HTTPS_PORT unless it is 443."""
    port = "" if cfg.https_port == 443 else f":{cfg.https_port}"
    return f"https://%[req.hdr(host),field(1,:)]{port}%[url]"


def global_section(cfg) -> str:
    # expose-fd listeners: a reload hands the listening sockets to the new worker (no refused connection).
    lines = ["global", "    log stdout format raw local0 notice", "    maxconn 4096", "    hard-stop-after 20s",
             f"    stats socket {ADMIN_SOCKET} mode 600 level admin expose-fd listeners",
             f"    server-state-file {SERVER_STATE}", *edge_relay.handoff_socket(cfg)]
    if cfg.tls:
        lines += ["    ssl-default-bind-curves X25519:prime256v1:secp384r1",
                  f"    ssl-default-bind-ciphers {CIPHERS}",
                  f"    ssl-default-bind-ciphersuites {CIPHERSUITES}",
                  f"    ssl-default-bind-options {TLS_OPTIONS}",
                  "    tune.ssl.default-dh-param 2048"]
    return "\n".join(lines) + "\n"


def sync_program(cfg) -> str:
    """The sync process of the certificate and the configuration, started by HAProxy's master (master-worker
    mode); a reload (which it triggers on a new configuration, see edge_sync) stops it and starts a new one."""
    cert = f"--from http://tasks.certs:{CERTS_PORT}/bundle --cert {CERT_PATH} " if cfg.tls else ""
    return ("program certsync\n"
            f"    command edge-agent sync {cert}--socket {ADMIN_SOCKET} --interval {cfg.cert_sync_interval} "
            f"--config-from {config_url()} --config {CONFIG_PATH} --state-file {SERVER_STATE}\n")


def config_url() -> str:
    return f"http://tasks.certs:{CERTS_PORT}/haproxy.cfg"


TLS_BIND = f"ssl crt {CERT_PATH} alpn h2,http/1.1"


def frontends(cfg) -> str:
    if not cfg.tls:
        trusted = " ".join(p.strip() for p in cfg.trusted_lb.split(",") if p.strip())
        lines = ["frontend web", f"    bind :{HTTP_PORT}", *edge_relay.binds(cfg, "http"), FRONTEND_KEEPALIVE,
                 WAIT_FOR_SERVERS,
                 "    http-request disable-l7-retry if !METH_GET !METH_HEAD"]
        if trusted:
            lines += [f"    acl from_lb src {trusted}",
                      "    http-request set-header X-Forwarded-Proto http if !from_lb || !{ req.hdr(x-forwarded-proto) -m found }"]
        else:
            lines += ["    http-request set-header X-Forwarded-Proto http"]
        return "\n".join(lines + [MAINTENANCE_RULE, STATIC_RULE, "    default_backend app"]) + "\n"
    return (f"frontend http\n"
            f"    bind :{HTTP_PORT}\n"
            + "".join(f"{line}\n" for line in edge_relay.binds(cfg, "http")) +
            f"    acl acme_challenge path_beg {CHALLENGE}\n"
            f"    http-request redirect location {redirect_location(cfg)} code 301 unless acme_challenge\n"
            f"    use_backend certs if acme_challenge\n"
            f"\n"
            f"frontend https\n"
            f"    bind :{HTTPS_PORT} {TLS_BIND}\n"
            + "".join(f"{line} {TLS_BIND}\n" for line in edge_relay.binds(cfg, "https")) +
            f"{FRONTEND_KEEPALIVE}\n"
            f"{WAIT_FOR_SERVERS}\n"
            f"    http-request set-header X-Forwarded-Proto https\n"
            f"    http-request disable-l7-retry if !METH_GET !METH_HEAD\n"
            f"    http-response set-header Strict-Transport-Security \"{hsts(cfg)}\"\n"
            f"{MAINTENANCE_RULE}\n"
            f"{STATIC_RULE}\n"
            f"    default_backend app\n")


def _app_servers(cfg, slots: int) -> str:
    return ("    balance roundrobin\n"
            "    option httpchk\n"
            f"    http-check send meth GET uri /health/ ver HTTP/1.1 hdr Host \"{cfg.health_host}\"\n"
            "    http-check expect status 200\n"
            f"{APP_DEFAULT_SERVER}\n"
            f"    server-template app {slots} \"tasks.app:8000\"\n")


def static_backend(cfg, slots: int) -> str:
    """The app's tasks again, over pooled connections; a 404 is retried on another one, up to one try per slot
    (redispatch each time)."""
    return ("backend static\n"
            f"    retries {slots}\n"
            "    retry-on conn-failure empty-response 503 404\n"
            "    http-response set-header Cache-Control no-store if { status 404 }\n"
            + STATIC_POOL
            + _app_servers(cfg, slots))


def backends(cfg) -> str:
    slots = cfg.replicas * 2 + 2
    text = "backend app\n" + _app_servers(cfg, slots)
    text += "\n" + static_backend(cfg, slots)
    text += "\n" + MAINTENANCE_BACKEND
    if cfg.tls:
        text += ("\nbackend certs\n"
                 "    default-server init-addr last,none resolvers docker resolve-prefer ipv4\n"
                 f"    server-template certs 2 \"tasks.certs:{CERTS_PORT}\"\n")
    return text


def render(cfg) -> str:
    """The whole haproxy.cfg for ``cfg``."""
    # The same text for TLS_MODE acme and files: switching the source of certificates never restarts a proxy.
    head = f"# Rendered by deploy.ship.edge_cfg for stack {cfg.stack_name}; do not edit.\n"
    parts = [head + global_section(cfg), sync_program(cfg), RESOLVERS, DEFAULTS + RELOAD_DEFAULTS, frontends(cfg),
             backends(cfg)]
    return "\n".join(parts)
