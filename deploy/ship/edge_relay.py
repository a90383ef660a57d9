"""The relay in front of the proxy with host-mode ports (PUBLISH_MODE=host): pure spec and text builders.

Swarm cannot run two tasks that publish the same host-mode port on one node, so a proxy that published its ports
itself had to be replaced stop-first: a gap on every change of the edge image. With host-mode ports the stack
instead runs:

- ``relay`` (global, the host's network, PROXY_IMAGE): HAProxy in TCP mode bound to PUBLISHED_PORT (and
  HTTPS_PORT) on the node, forwarding every connection to the node's proxy over a unix socket, with PROXY
  protocol v2 (the proxy sees the client's address). On the host network two relays can bind one port
  (SO_REUSEPORT), so it is replaced start-first; the old one gets SIGUSR1 (HAProxy's soft stop: listeners closed,
  connections finished). It is plain PROXY_IMAGE with an inline configuration, so only a PROXY_IMAGE or port
  change replaces it.
- ``proxy`` publishes no port: it listens on the unix sockets in the volume ``sockets`` (local to each node,
  mounted by both at /var/lib/haproxy) and is replaced start-first too. The new proxy binds each path by rename
  (the old one keeps its open socket and finishes its connections); before it starts, it reads the running
  proxy's server state through the handoff socket, so it routes from its first request, and waits for the
  certificate (edge/edge_sync.py, `prepare --handoff`). Swarm stops the old proxy once the new one is healthy.
bench/relay_handover.py measured the handover alone; tests/ship/test_proxy_reload.py proves the whole change.
"""

from __future__ import annotations

SOCKET_DIR = "/var/lib/haproxy"    # the ``sockets`` volume (both images: FROM PROXY_IMAGE, owned by haproxy)
HTTP_SOCKET = f"{SOCKET_DIR}/http.sock"
HTTPS_SOCKET = f"{SOCKET_DIR}/https.sock"
HANDOFF_SOCKET = f"{SOCKET_DIR}/handoff.sock"   # the running proxy's `show servers state`, for its successor
RELAY_CFG = "/tmp/relay.cfg"
# The relay must outlast any request the proxy lets run (timeout server 60 s): it never cuts one itself.
RELAY_TIMEOUT = "75s"
# The relay binds the node's ports as root, then HAProxy drops to its user (`user`/`group`): what that needs.
RELAY_CAPS = ["NET_BIND_SERVICE", "SETGID", "SETUID"]
BOUND = "grep -qE '^Uid:[[:space:]]+[1-9]' /proc/1/status"   # HAProxy runs as its user: its ports are bound
# Kept-alive client connections through an old relay end when the proxy closes them (timeout http-keep-alive
# 10 s, or a response with Connection: close): the grace covers that and the proxy's longest request.
RELAY_GRACE = "75s"
# The proxy is healthy once its HAProxy listens on its own (overlay) port 8080: a bash connect (`edge-agent health`,
# a Python start importing the ACME library, timed out on the loaded 3-node lab). Every 5 s, not 1 s: each check
# is an exec in the container; on the loaded 3-node lab two more execs per node and second (proxy and relay)
# starved the app's own 1 s checks, and Swarm replaced healthy app tasks. A handover waits for the first check
# (5 s after the start), which is only on an image change.
CHECK_EVERY = "5s"
PROXY_HEALTH = {"test": ["CMD", "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080"], "interval": CHECK_EVERY,
                "timeout": "3s", "retries": 3,
                # prepare may wait up to 120 s for the configuration and certificate (the old proxy serves meanwhile)
                "start_period": "130s"}


def enabled(cfg) -> bool:
    """Host-mode ports with a proxy: the relay publishes them (ingress ports are the routing mesh's)."""
    return bool(cfg.proxy) and cfg.publish_mode == "host"


def _pair(name: str, port: int, socket: str) -> str:
    return (f"frontend {name}\n    bind :{port}\n    default_backend {name}\n\n"
            f"backend {name}\n    server proxy unix@{socket} send-proxy-v2\n")


def render(cfg) -> str:
    """The relay's haproxy.cfg: TCP, one frontend/backend pair per published port."""
    head = ("global\n    log stdout format raw local0 notice\n    maxconn 8192\n    user haproxy\n    group haproxy\n"
            "    hard-stop-after 70s\n\n"
            "defaults\n    mode tcp\n    log global\n    timeout connect 2s\n"
            f"    timeout client {RELAY_TIMEOUT}\n    timeout server {RELAY_TIMEOUT}\n"
            # a proxy that is not there (between two proxies, a restart) is retried, 1 s apart, before a refusal
            "    retries 5\n\n")
    pairs = [_pair("http", cfg.published_port, HTTP_SOCKET)]
    if cfg.tls:
        pairs.append(_pair("https", cfg.https_port, HTTPS_SOCKET))
    return head + "\n".join(pairs)


def _relay_service(cfg, deploy: dict) -> dict:
    script = f'printf "%s" "$$RELAY_CFG" > {RELAY_CFG} && exec haproxy -db -f {RELAY_CFG}'
    # Healthy once this relay's own HAProxy listens: a connect alone could be answered by the old relay on the
    # same host port, so the check also needs HAProxy (pid 1) to have dropped root, which it does only after
    # binding every listener. Swarm sends the old relay SIGUSR1 only after that.
    probe = f"{BOUND} && exec 3<>/dev/tcp/127.0.0.1/{cfg.published_port}"
    return {
        "image": cfg.proxy_image,
        "user": "root",
        "entrypoint": ["sh", "-c", script],
        "environment": {"RELAY_CFG": render(cfg).replace("$", "$$")},
        "volumes": [{"type": "volume", "source": "sockets", "target": SOCKET_DIR}],
        "networks": ["hostnet"],
        "healthcheck": {"test": ["CMD", "bash", "-c", probe], "interval": CHECK_EVERY, "timeout": "3s", "retries": 3,
                        "start_period": "10s"},
        "stop_signal": "SIGUSR1",
        "stop_grace_period": RELAY_GRACE,
        "deploy": dict(deploy),
    }


def apply(spec: dict, cfg, harden) -> None:
    """With host-mode ports: the proxy publishes nothing and listens on the sockets volume, the relay publishes
    the ports, deployed like the proxy (global, start-first); ``harden``: the proxy's runtime limits."""
    proxy = spec["services"]["proxy"]
    proxy.pop("ports", None)
    proxy["volumes"] = [{"type": "volume", "source": "sockets", "target": SOCKET_DIR}] + proxy.get("volumes", [])
    proxy["environment"]["EDGE_HANDOFF"] = HANDOFF_SOCKET
    spec["services"]["relay"] = harden(_relay_service(cfg, proxy["deploy"]), RELAY_CAPS)
    spec["networks"]["hostnet"] = {"external": True, "name": "host"}
    spec["volumes"]["sockets"] = {}


def binds(cfg, name: str) -> list:
    """The proxy's extra bind line for frontend ``name`` ('http' or 'https') when the relay runs, else none."""
    socket = HTTP_SOCKET if name == "http" else HTTPS_SOCKET
    return [f"    bind unix@{socket} mode 600 accept-proxy"] if enabled(cfg) else []


def handoff_socket(cfg) -> list:
    """The proxy's operator socket its successor on the node reads the servers' state from, when the relay runs."""
    return [f"    stats socket {HANDOFF_SOCKET} mode 600 level operator"] if enabled(cfg) else []
