"""Tasks: the lab cluster (several nodes, each with its own Docker engine and sshd, forming one Swarm)."""

from __future__ import annotations

from deploy.tasks._base import task


@task(help={
    "nodes": "number of nodes (1..9); node 1 is the Swarm manager, the others join as workers",
    "name": "cluster name, prefix of every container, volume and network it makes (default djlab)",
    "ssh_port": "127.0.0.1 port for node 1's sshd (default 2223)",
    "app_port_base": "node i's app port is published on 127.0.0.1:<base + i> (default 18000)",
    "node_app_port": "the HTTP port the stack publishes on every node (default 8080)",
    "https_port_base": "node i's HTTPS port is published on 127.0.0.1:<base + i> (default 18440)",
    "node_https_port": "the HTTPS port the stack publishes on every node (default 8443)",
    "subnet": "IPv4 subnet of the cluster network (default: the first free 172.30.200-249.0/24)",
})
def up(c, nodes=3, name="djlab", ssh_port=2223, app_port_base=18000, node_app_port=8080, https_port_base=18440,
       node_https_port=8443, subnet=""):
    """Bring up the lab cluster (nodes, swarm, registry endpoint); a second run only checks."""
    import time

    from deploy.lab import cluster
    from deploy.lab.cluster_plan import ClusterSpec

    started = time.monotonic()
    spec = cluster.up(spec=ClusterSpec(name=name, nodes=int(nodes), ssh_port=int(ssh_port),
                                       app_port_base=int(app_port_base), node_app_port=int(node_app_port),
                                       https_port_base=int(https_port_base), node_https_port=int(node_https_port),
                                       subnet=subnet))
    for line in cluster.status(spec.name):
        print(line)
    print(f"cluster {spec.name} ready in {time.monotonic() - started:.1f}s "
          f"(manager: root@127.0.0.1:{spec.ssh_port}, key and known_hosts in "
          f"{cluster.ClusterFiles(spec.name).dir})")


@task(help={"name": "remove only this cluster (default: every lab cluster)"})
def down(c, name=None):
    """Remove the lab cluster's nodes, volumes, network, registry endpoint and files."""
    from deploy.lab import cluster

    removed = cluster.down(name)
    print("removed: " + (", ".join(removed) if removed else "nothing (no lab cluster found)"))


@task(help={"name": "cluster name (default djlab)"})
def status(c, name="djlab"):
    """Show one line per lab cluster node: container, swarm role, availability, readiness, ports."""
    from deploy.lab import cluster

    for line in cluster.status(name):
        print(line)


@task(help={
    "name": "cluster name (default djlab)",
    "env": "environment name to write: deploy/<env>.env (default cluster)",
    "stack": "stack name on the cluster (default djcluster)",
    "replicas": "app replicas (default 3: one per node, spread by node.id)",
})
def env(c, name="djlab", env="cluster", stack="djcluster", replicas=3):
    """Start the cluster's ACME CA, push the stand-in images and write deploy/<env>.env (HTTPS on every node)."""
    from deploy.core.runner import Runner
    from deploy.lab import cluster, cluster_acme, cluster_env

    spec = cluster.load_spec(name)
    tls = cluster_acme.ensure(Runner(ctx=c, echo=False), spec)
    cluster_env.push_stand_ins()
    path = cluster_env.write(spec, env=env, stack=stack, replicas=int(replicas), tls=tls)
    print(f"wrote {path}; deploy with `inv deploy --env {env}`, then open https://{spec.host_name}:"
          f"{spec.https_port(1)}/ (resolve {spec.host_name} to 127.0.0.1, trust {tls['HEALTH_CA_FILE']})")
