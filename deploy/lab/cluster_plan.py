"""The lab cluster, decided: pure functions that return names, addresses and docker argument lists.

deploy.lab.cluster runs what these return (through the Runner); nothing here touches the machine, so the
unit tests check every command and every error text exactly.

Shape: N node containers (image from deploy/lab/node/) on one user-defined bridge network with a fixed
subnet (node addresses must survive a node restart: Swarm remembers them). Node i gets address .10+i,
its own named volume for /var/lib/docker (swarm state and pulled images survive a stop/start),
127.0.0.1:<app_port_base + i> -> node:<node_app_port> (HTTP) and 127.0.0.1:<https_port_base + i> ->
node:<node_https_port> (HTTPS). Node 1 also publishes SSH on 127.0.0.1:<ssh_port> and is the Swarm manager;
the others join as workers. The cluster's ACME CA (deploy.lab.cluster_acme) gets address .5.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from deploy.core.errors import ToolkitError

LABEL = "djdeploy.lab"              # value "cluster" on everything the cluster makes
CLUSTER_LABEL = "djdeploy.lab.cluster"  # value: the cluster's name
NODE_LABEL = "djdeploy.lab.node"    # value: the node's number
CONFIG_LABEL = "djdeploy.lab.config"  # value: hash of the node's run argv (changed -> recreated)
NODE_DIR = Path(__file__).resolve().parent / "node"
NODE_REPOSITORY = "djlab-node"
MAX_NODES = 9
# Candidate subnets for the cluster network, tried in order; the first that overlaps nothing is used.
SUBNET_CANDIDATES = tuple(f"172.30.{n}.0/24" for n in range(200, 250))

# Nested engines on this kernel (LAB.md, "Several nodes on one machine"): --privileged fails (no
# CAP_SYS_RESOURCE in the bounding set); the inner dockerd needs the cgroup tree read-write.
NESTED_ENGINE_FLAGS = (
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined",
    "--security-opt", "apparmor=unconfined",
    "--security-opt", "systempaths=unconfined",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run:exec,mode=0755",
    "--tmpfs", "/tmp:exec,mode=1777",
)


@dataclass(frozen=True)
class ClusterSpec:
    """What `up` builds. ``name`` prefixes every resource; ports are on 127.0.0.1."""

    name: str = "djlab"
    nodes: int = 3
    subnet: str = ""                 # chosen by choose_subnet when empty
    ssh_port: int = 2223             # node 1's sshd
    app_port_base: int = 18000       # node i's app port: app_port_base + i
    node_app_port: int = 8080        # the HTTP port the stack publishes (mode: host) on every node
    https_port_base: int = 18440     # node i's HTTPS port: https_port_base + i
    node_https_port: int = 8443      # the HTTPS port the stack publishes (mode: host) on every node
    registry_port: int = 5000        # the lab registry's port, same on the gateway and inside nodes

    @property
    def network(self) -> str:
        return f"{self.name}-net"

    def node(self, i: int) -> str:
        return f"{self.name}-node{i}"

    def volume(self, i: int) -> str:
        return f"{self.name}-node{i}-docker"

    def cgroup_parent(self, i: int) -> str:
        return f"/{self.name}-node{i}"

    def app_port(self, i: int) -> int:
        return self.app_port_base + i

    def https_port(self, i: int) -> int:
        return self.https_port_base + i

    @property
    def host_name(self) -> str:
        """The site's name in the cluster environment (its certificate's; resolved to node 1 by the cluster's CA)."""
        return f"{self.name}-cluster.test"

    @property
    def numbers(self) -> range:
        return range(1, self.nodes + 1)


def validate(spec: ClusterSpec) -> None:
    """Raise ToolkitError listing every problem with ``spec`` (before any side effect)."""
    problems = []
    if not 1 <= spec.nodes <= MAX_NODES:
        problems.append(f"nodes: {spec.nodes} is out of range; use 1..{MAX_NODES}")
    if not spec.name.replace("-", "").isalnum() or not spec.name[:1].isalpha():
        problems.append(f"name: {spec.name!r} must start with a letter and hold only letters, digits and '-'")
    ports = [("ssh_port", spec.ssh_port)] + [(f"{kind} port of node {i}", port(i)) for i in spec.numbers
                                             for kind, port in (("app", spec.app_port), ("HTTPS", spec.https_port))]
    for what, port in ports:
        if not 1024 <= port <= 65535:
            problems.append(f"{what}: {port} is not a port in 1024..65535")
    seen: dict[int, str] = {}
    for what, port in ports:
        if port in seen:
            problems.append(f"{what}: {port} collides with the {seen[port]}")
        seen.setdefault(port, what)
    if spec.node_app_port == spec.node_https_port:
        problems.append(f"node_https_port: {spec.node_https_port} is also node_app_port; HTTP and HTTPS need two ports")
    if spec.subnet:
        try:
            net = ipaddress.ip_network(spec.subnet)
            if net.version != 4 or net.num_addresses < 16 + spec.nodes:
                problems.append(f"subnet: {spec.subnet} must be an IPv4 network with room for the nodes (/27 or larger)")
        except ValueError:
            problems.append(f"subnet: {spec.subnet!r} is not a network like 172.30.200.0/24")
    if problems:
        raise ToolkitError("invalid cluster settings:\n" + "\n".join(f"  - {p}" for p in problems)
                           + "\nfix the flags (see `inv --help cluster.up`)")


def choose_subnet(used: list[str], candidates=SUBNET_CANDIDATES) -> str:
    """The first candidate overlapping none of ``used`` (docker network subnets and host routes)."""
    taken = []
    for text in used:
        try:
            taken.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            continue
    for cand in candidates:
        net = ipaddress.ip_network(cand)
        if not any(net.version == t.version and net.overlaps(t) for t in taken):
            return cand
    raise ToolkitError("no free subnet for the lab cluster network among "
                       f"{candidates[0]}..{candidates[-1]}; remove unused docker networks or pass --subnet")


def gateway(subnet: str) -> str:
    return str(ipaddress.ip_network(subnet)[1])


def node_ip(subnet: str, i: int) -> str:
    return str(ipaddress.ip_network(subnet)[10 + i])


def ca_ip(subnet: str) -> str:
    """The cluster's ACME CA on the cluster network (a fixed address: its API certificate names it)."""
    return str(ipaddress.ip_network(subnet)[5])


def labels(spec: ClusterSpec, **extra: str) -> list[str]:
    """``--label`` flags for a resource of this cluster."""
    pairs = {LABEL: "cluster", CLUSTER_LABEL: spec.name, **extra}
    out = []
    for key, value in pairs.items():
        out += ["--label", f"{key}={value}"]
    return out


def node_image_tag(files: dict[str, bytes]) -> str:
    """``djlab-node:<content hash>``: a changed node dir gives a new tag (and a rebuild), an unchanged one reuses."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name] + b"\0")
    return f"{NODE_REPOSITORY}:{digest.hexdigest()[:12]}"


def network_create_argv(spec: ClusterSpec, subnet: str) -> list[str]:
    return ["docker", "network", "create", "--driver", "bridge", "--subnet", subnet,
            "--gateway", gateway(subnet), *labels(spec), spec.network]


def volume_create_argv(spec: ClusterSpec, i: int) -> list[str]:
    return ["docker", "volume", "create", *labels(spec, **{NODE_LABEL: str(i)}), spec.volume(i)]


def run_argv(spec: ClusterSpec, i: int, image: str, subnet: str, ssh_dir: str) -> list[str]:
    """``docker run`` for node ``i``. ``ssh_dir`` holds its host key and authorized_keys (mounted read-only)."""
    body = [
        "--hostname", spec.node(i), "--network", spec.network, "--ip", node_ip(subnet, i),
        *NESTED_ENGINE_FLAGS,
        "-v", f"{spec.volume(i)}:/var/lib/docker",
        "-v", f"{ssh_dir}:/etc/ssh/lab:ro",
        "-e", f"NODE_CGROUP_PARENT={spec.cgroup_parent(i)}",
        "-e", f"REGISTRY_UPSTREAM={gateway(subnet)}:{spec.registry_port}",
        "-p", f"127.0.0.1:{spec.app_port(i)}:{spec.node_app_port}",
        "-p", f"127.0.0.1:{spec.https_port(i)}:{spec.node_https_port}",
    ]
    if i == 1:
        body += ["-p", f"127.0.0.1:{spec.ssh_port}:22"]
    config = hashlib.sha256("\0".join(body + [image]).encode()).hexdigest()[:12]
    return ["docker", "run", "-d", "--name", spec.node(i),
            *labels(spec, **{NODE_LABEL: str(i), CONFIG_LABEL: config}),
            *body, image]


def config_of(argv: list[str]) -> str:
    """The config hash a run_argv carries in its labels."""
    for a in argv:
        if a.startswith(CONFIG_LABEL + "="):
            return a.split("=", 1)[1]
    return ""


def node_docker(spec: ClusterSpec, i: int, *args: str, stdin: bool = False) -> list[str]:
    """A docker CLI command run inside node ``i`` against its own engine."""
    return ["docker", "exec", *(["-i"] if stdin else []), spec.node(i), "docker", *args]


def swarm_init_argv(spec: ClusterSpec, subnet: str) -> list[str]:
    ip = node_ip(subnet, 1)
    return node_docker(spec, 1, "swarm", "init", "--advertise-addr", ip, "--listen-addr", f"{ip}:2377")


def join_plan(spec: ClusterSpec, subnet: str, joined: set[int]) -> list[tuple[int, list[str]]]:
    """For every worker not yet in the swarm: (node number, argv). The worker token comes on stdin
    (never in the host's argv or echo); the inner shell hands it to `docker swarm join`."""
    manager = f"{node_ip(subnet, 1)}:2377"
    plan = []
    for i in spec.numbers:
        if i == 1 or i in joined:
            continue
        script = 'IFS= read -r token && exec docker swarm join --token "$token" --advertise-addr "$1" "$2"'
        plan.append((i, ["docker", "exec", "-i", spec.node(i), "sh", "-c", script, "sh",
                         node_ip(subnet, i), manager]))
    return plan


def swarm_state_argv(spec: ClusterSpec, i: int) -> list[str]:
    return node_docker(spec, i, "info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}")


def node_ls_argv(spec: ClusterSpec) -> list[str]:
    return node_docker(spec, 1, "node", "ls", "--format",
                       "{{.Hostname}}\t{{.ManagerStatus}}\t{{.Availability}}\t{{.Status}}")


def known_hosts_line(ssh_port: int, host_public_key: str) -> str:
    """The pinned entry for node 1's sshd as Fabric/OpenSSH see it: ``[127.0.0.1]:PORT keytype key``."""
    keytype, key = host_public_key.split()[:2]
    return f"[127.0.0.1]:{ssh_port} {keytype} {key}\n"


def engine_failed(node: str, seconds: float, log_tail: str) -> str:
    return (f"the Docker engine in lab node {node} did not answer within {seconds:g}s; "
            f"its last log lines:\n{log_tail}\n"
            "fix the cause above, then run `inv cluster.down` and `inv cluster.up` again")


def node_exited(node: str, log_tail: str) -> str:
    return (f"lab node {node} stopped while starting; its last log lines:\n{log_tail}\n"
            "fix the cause above, then run `inv cluster.down` and `inv cluster.up` again")


def port_taken(port: int, what: str) -> str:
    return (f"127.0.0.1:{port} ({what}) is already in use by another program; "
            "free it or pick other ports (see `inv --help cluster.up`)")


def lab_missing(what: str) -> str:
    return f"the lab is not provisioned ({what} is missing); run `inv lab.up --deploy` first"
