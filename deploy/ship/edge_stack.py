"""The edge of the Swarm stack with TLS at the proxy (TLS_MODE acme or files): pure spec and command builders.

- ``proxy`` (global, one per node, host or ingress ports): HAProxy from the edge image, HTTP on PUBLISHED_PORT,
  HTTPS on HTTPS_PORT; its ``certsync`` program installs the current certificate into the running process.
- ``certs`` (1 replica on a manager, stop-first: two ACME clients must never share the volume; the proxies keep
  serving their certificate in memory meanwhile): the ACME client (or the user's files, from versioned Docker
  secrets), with the account key and the certificates on the named volume ``certs``. It also serves the proxies'
  haproxy.cfg (the versioned Docker config is mounted here, not in the proxy): a configuration change never
  replaces a proxy task, each proxy reloads it seamlessly (edge/edge_sync.py).
- the ``edge`` overlay network joins only those two: the app cannot fetch the private key.
The app trusts X-Forwarded-Proto from the stack network only: its subnet is read on the manager at deploy time
into an env file (``trusted_proxy_cmd``), so the stack file itself is the same in a dry run and a real run.
"""

from __future__ import annotations

import hashlib

from deploy.ship import edge_cfg, edge_relay

CERTS_STATE = "/var/lib/edge"
CERTS_PROXY_CFG = "/etc/edge/haproxy.cfg"   # in the certs service: what it serves the proxies at /haproxy.cfg


def cert_names(cfg) -> list[str]:
    return [h for h in cfg.django_allowed_hosts.split(",") if h]


def secret_values(cfg) -> dict[str, str]:
    """The edge's secrets by file name under /run/secrets (the key is never printed)."""
    if cfg.tls_mode == "files":
        return {"tls_cert": cfg.tls_cert, "tls_key": cfg.tls_key}
    if cfg.tls_mode == "acme" and cfg.acme_ca_root:
        return {"acme_ca_root": cfg.acme_ca_root}
    return {}


def config_id(cfg) -> str:
    """What the certs service must be serving for this deploy (mode, names, CA, certificate): the deploy waits
    until the certs service reports exactly this id with a valid certificate."""
    parts = [cfg.tls_mode, ",".join(sorted(cert_names(cfg))), cfg.acme_directory if cfg.tls_mode == "acme" else "",
             hashlib.sha256(cfg.tls_cert.encode()).hexdigest() if cfg.tls_mode == "files" else ""]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def csrf_origins(cfg) -> str:
    """https origins of every allowed host (``.example.com`` -> ``https://*.example.com``), with HTTPS_PORT."""
    port = "" if (cfg.https_port == 443 or not cfg.tls) else f":{cfg.https_port}"
    return ",".join(f"https://{'*' + h if h.startswith('.') else h}{port}" for h in cert_names(cfg) if h != "*")


def app_environment(cfg) -> dict[str, str]:
    """What the app needs to know about the edge: HSTS as configured (the proxy sets it too), the origins."""
    return {"DJANGO_CSRF_TRUSTED_ORIGINS": csrf_origins(cfg), "DJANGO_HSTS_SECONDS": str(cfg.hsts_max_age),
            "DJANGO_HSTS_INCLUDE_SUBDOMAINS": "on" if cfg.hsts_include_subdomains else "off",
            "DJANGO_HSTS_PRELOAD": "on" if cfg.hsts_preload else "off"}


def certs_service(cfg, edge_ref: str, block: dict) -> dict:
    env = {"CERTS_CONFIG_ID": config_id(cfg)}
    secrets = []
    if cfg.tls_mode == "acme":
        env.update(CERT_NAMES=",".join(cert_names(cfg)), ACME_DIRECTORY=cfg.acme_directory, ACME_EMAIL=cfg.acme_email)
        if cfg.acme_ca_root:
            env["ACME_CA_ROOT_FILE"] = "/run/secrets/acme_ca_root"
    for key in secret_values(cfg):
        secrets.append({"source": key, "target": key})
    networks = ["edge"] + (["acme"] if cfg.acme_network else [])
    return {
        "image": edge_ref,
        "command": ["edge-agent", "certs", "--mode", cfg.tls_mode],
        "environment": env,
        "secrets": secrets,
        "volumes": [f"certs:{CERTS_STATE}"],
        "networks": networks,
        "stop_grace_period": "5s",
        "deploy": dict(block, replicas=1, placement={"constraints": ["node.role == manager"]}),
    }


def apply(spec: dict, cfg, edge_ref: str, block: dict, harden=lambda service, caps=(): service) -> None:
    """Turn the plain proxy of ``spec`` into the edge (proxy + certs; with TLS_MODE=external the certs service
    holds no certificate, it serves the proxies' configuration only). ``block`` is a stop-first
    deploy block of the stack (update/rollback/restart policy); ``harden`` applies the stack's runtime limits
    (read-only root with a tmpfs /tmp, no capabilities but ``caps``, the proxy's memory/CPU/PIDs limits) to the certs
    service and the relay. With host-mode ports the relay publishes them (deploy.ship.edge_relay), deployed like
    the proxy."""
    services = spec["services"]
    proxy = services["proxy"]
    proxy["image"] = edge_ref
    proxy["environment"] = {"CONFIG_URL": edge_cfg.config_url()}
    if cfg.tls:
        proxy["environment"]["CERTS_URL"] = f"http://tasks.certs:{edge_cfg.CERTS_PORT}/bundle"
    # The configuration goes to the certs service, not to the proxy: a change replaces the certs task (the
    # proxies keep serving meanwhile) and each proxy reloads it seamlessly; the proxy's spec stays the same.
    certs_configs = [dict(c, target=CERTS_PROXY_CFG) for c in proxy.pop("configs", [])]
    mode = cfg.publish_mode
    proxy["ports"] = [{"target": edge_cfg.HTTP_PORT, "published": cfg.published_port, "protocol": "tcp", "mode": mode}]
    if cfg.tls:
        proxy["ports"].append({"target": edge_cfg.HTTPS_PORT, "published": cfg.https_port, "protocol": "tcp",
                               "mode": mode})
    proxy["networks"] = ["backend", "edge"]
    proxy["healthcheck"] = dict(edge_relay.PROXY_HEALTH)   # start-first: the old proxy stops once this one serves
    services["certs"] = harden(certs_service(cfg, edge_ref, block))
    if certs_configs:
        services["certs"]["configs"] = certs_configs
        services["certs"]["command"] += ["--haproxy-cfg", CERTS_PROXY_CFG]
    spec["networks"]["edge"] = {"driver": "overlay"}
    if cfg.acme_network:
        spec["networks"]["acme"] = {"external": True, "name": cfg.acme_network}
    spec["volumes"]["certs"] = {}
    if edge_relay.enabled(cfg):
        edge_relay.apply(spec, cfg, harden)


def app_env_file(remote_dir: str) -> str:
    return f"{remote_dir.rstrip('/')}/trusted-proxy.env"


def trusted_proxy_cmd(cfg, network: str) -> list:
    """Write DJANGO_TRUSTED_PROXY=<the stack network's subnets> on the manager (the app's env_file)."""
    return ["sh", "-c", 'set -e; umask 077; s="$(docker network inspect --format "{{range .IPAM.Config}}{{.Subnet}},{{end}}" "$1")"; '
                        '[ -n "$s" ]; printf "DJANGO_TRUSTED_PROXY=%s\\n" "${s%,}" > "$2"',
            "trusted-proxy", network, app_env_file(cfg.remote_dir)]


def _certs_agent_script(arg: str, agent: str = "status") -> str:
    """sh: `edge-agent <agent>` in the running task of the service named by positional parameter ``arg``."""
    return (f'c="$(docker ps -q --filter "label=com.docker.swarm.service.name={arg}" --filter status=running '
            f'| head -n 1)"; [ -n "$c" ] || {{ echo "no running task of {arg} on this node" >&2; exit 3; }}; '
            f'exec docker exec "$c" edge-agent {agent}')


def certs_status_cmd(cfg) -> list:
    """The certs service's status (JSON) from its running container on this manager."""
    return ["sh", "-c", _certs_agent_script("$1"), "certs-status", f"{cfg.stack_name}_certs"]


def certs_retry_cmd(cfg) -> list:
    """Ask the running certs service to retry a failed order now (it otherwise waits out its backoff)."""
    return ["sh", "-c", _certs_agent_script("$1", "retry"), "certs-retry", f"{cfg.stack_name}_certs"]


def proxies_status_cmd(cfg) -> list:
    """The number of running proxy tasks on its own line, then the certs service's status (what each proxy reported)."""
    return ["sh", "-c", 'docker service ps --filter desired-state=running --format "{{.CurrentState}}" "$1" '
                        '| grep -c "^Running"; ' + _certs_agent_script("$2"),
            "proxies-status", f"{cfg.stack_name}_proxy", f"{cfg.stack_name}_certs"]
