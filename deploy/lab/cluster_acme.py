"""The lab cluster's own ACME CA: a Pebble + challtestsrv (deploy.lab.acme) for one cluster, on the host's engine.

- Pebble joins the cluster network at a fixed address (``cluster_plan.ca_ip``: .5) that its API certificate names:
  the certs service runs inside node 1's engine, where the host engine's container names do not resolve, and
  reaches ``https://<ca_ip>:14000/dir`` through node 1's address (the nodes NAT their containers' traffic).
- challtestsrv answers every name with node 1's address, so Pebble's HTTP-01 validation (real, never always-valid)
  connects to node 1's HTTP port (``node_app_port``), where the stack's proxy answers the challenge path.
- Everything carries the cluster's labels: `inv cluster.down` removes the CA with the nodes. Pebble makes a new
  root at every start; the roots are written to ``<cluster dir>/acme/`` (ca-root.pem: what a browser trusts).
"""

from __future__ import annotations

from pathlib import Path

from deploy.lab import acme
from deploy.lab import cluster_plan as plan
from deploy.lab.cluster_plan import ClusterSpec
from deploy.lab.cluster_state import ClusterFiles

VALIDITY = 180   # seconds: renewals (at 2/3 of the lifetime, every 120 s) happen while the cluster tests run


def acme_spec(spec: ClusterSpec, validity: int = VALIDITY) -> acme.AcmeSpec:
    """Pure: the CA of cluster ``spec`` (its subnet known): names ``<cluster>-pebble`` / ``-challtestsrv``."""
    labels = ((plan.LABEL, "cluster"), (plan.CLUSTER_LABEL, spec.name))  # what `cluster.down` removes by
    return acme.AcmeSpec(prefix=spec.name, labels=labels, http_port=spec.node_app_port,
                         target_ipv4=plan.node_ip(spec.subnet, 1), validity=validity,
                         tls_names=(plan.ca_ip(spec.subnet),))


def files_dir(spec: ClusterSpec) -> Path:
    return ClusterFiles(spec.name).dir / "acme"


def env_values(spec: ClusterSpec, directory: Path) -> dict[str, str]:
    """Pure: the env keys that point a deploy on the cluster at its CA and serve https://<host_name> on every node."""
    return {"TLS_MODE": "acme", "ACME_DIRECTORY": f"https://{plan.ca_ip(spec.subnet)}:{acme.API_PORT}/dir",
            "ACME_EMAIL": "lab@djdeploy.test", "ACME_CA_ROOT_FILE": str(directory / "api-root.pem"),
            "HEALTH_CA_FILE": str(directory / "ca-root.pem"), "DJANGO_ALLOWED_HOSTS": spec.host_name,
            "HEALTH_HOST": spec.host_name, "HTTPS_PORT": str(spec.node_https_port), "CERT_SYNC_INTERVAL": "2",
            "HEALTH_URL": f"https://127.0.0.1:{spec.https_port(1)}/health/?ready=1"}


def ensure(runner, spec: ClusterSpec, validity: int = VALIDITY, say=print) -> dict[str, str]:
    """Start the cluster's CA (once; a running one is kept), attach it to the cluster network (once), write its
    roots; return the env values (env_values)."""
    ca = acme_spec(spec, validity)
    acme.ensure(runner, ca, say)
    attached = runner.run(["docker", "inspect", "--format", "{{json .NetworkSettings.Networks}}", ca.pebble],
                          hide=True).stdout
    if f'"{spec.network}"' not in attached:
        runner.run(acme.connect_argv(ca, spec.network, plan.ca_ip(spec.subnet)), hide=True)
    directory = files_dir(spec)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    root, _ = acme.ca_pems(runner, ca)
    (directory / "api-root.pem").write_text(acme.api_root_pem(runner, ca))
    (directory / "ca-root.pem").write_text(root)
    return env_values(spec, directory)
