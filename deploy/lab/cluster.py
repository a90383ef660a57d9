"""The lab cluster: N node containers, each with its own Docker engine and sshd, forming one Swarm.

``up(nodes=3)`` is idempotent (a second run checks and returns in seconds), ``down()`` removes the nodes,
their volumes, the network, the registry endpoint, the cgroups their engines made and the cluster's
files, and nothing else (everything is found by label ``djdeploy.lab.cluster=<name>``). ``status()``
returns one line per node. Decisions live in cluster_plan (pure); this module runs them.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
import time
from pathlib import Path

from deploy.core.errors import CommandFailed, ToolkitError
from deploy.core.runner import Runner
from deploy.lab import cluster_plan as plan
from deploy.lab import cluster_registry, cluster_state
from deploy.lab.cluster_plan import ClusterSpec
from deploy.lab.cluster_state import ClusterFiles

ENGINE_TIMEOUT = 60.0   # a node's dockerd answers (seen: ~2 s)
SWARM_TIMEOUT = 60.0    # every node Ready in `docker node ls`


def _runners(echo: bool = True, out=None):
    from invoke import Context

    out = out or sys.stdout
    act = Runner(ctx=Context(), echo=echo, out=out)
    ask = Runner(ctx=Context(), echo=False, out=out)
    return act, ask


def node_image(ask: Runner, act: Runner) -> str:
    """The node image tag for the current deploy/lab/node/ files; built once (classic builder) if missing."""
    files = {p.name: p.read_bytes() for p in sorted(plan.NODE_DIR.iterdir()) if p.is_file()}
    tag = plan.node_image_tag(files)
    if ask.run(["docker", "image", "inspect", "--format", "{{.Id}}", tag], check=False, hide=True).ok:
        return tag
    from deploy.core.engine import client

    act._say(f"[local] building the lab node image {tag} from {plan.NODE_DIR}")
    cli = client(timeout=600)
    try:
        cli.images.build(path=str(plan.NODE_DIR), tag=tag, rm=True, pull=False,
                         labels={plan.LABEL: "cluster-image"})
    except Exception as exc:  # docker.errors.BuildError / APIError: one line with the failing step
        raise ToolkitError(f"building the lab node image failed: {str(exc).splitlines()[0][:300]}; "
                           "check Debian's mirror is reachable and run `inv cluster.up` again") from None
    finally:
        cli.close()
    stale = ask.run(["docker", "image", "ls", "--filter", f"label={plan.LABEL}=cluster-image", "--format",
                     "{{.Repository}}:{{.Tag}}", plan.NODE_REPOSITORY], check=False, hide=True).stdout.split()
    for old in (ref for ref in stale if ref != tag):  # earlier versions of deploy/lab/node/; in-use ones stay
        ask.run(["docker", "image", "rm", old], check=False, hide=True)
    return tag


def _used_subnets(ask: Runner) -> list[str]:
    ids = ask.run(["docker", "network", "ls", "-q"], hide=True).stdout.split()
    fmt = "{{range .IPAM.Config}}{{.Subnet}} {{end}}"
    used = ask.run(["docker", "network", "inspect", "--format", fmt, *ids], hide=True).stdout.split() if ids else []
    routes = ask.run(["ip", "-o", "-4", "route", "show"], check=False, hide=True).stdout
    used += [line.split()[0] for line in routes.splitlines() if line and line.split()[0] != "default"]
    return used


def _network_subnet(ask: Runner, spec: ClusterSpec) -> str | None:
    got = ask.run(["docker", "network", "inspect", "--format",
                   "{{index .Labels \"" + plan.CLUSTER_LABEL + "\"}} {{range .IPAM.Config}}{{.Subnet}}{{end}}",
                   spec.network], check=False, hide=True)
    if not got.ok:
        return None
    owner, _, subnet = got.stdout.strip().partition(" ")
    if owner != spec.name:
        raise ToolkitError(f"a docker network named {spec.network} exists but is not this lab cluster's; "
                           "remove it or pick another cluster name")
    return subnet


def _containers(ask: Runner, name: str | None = None) -> dict[str, dict]:
    sel = f"{plan.CLUSTER_LABEL}={name}" if name else f"{plan.LABEL}=cluster"
    ids = ask.run(["docker", "ps", "-aq", "--filter", f"label={sel}"], hide=True).stdout.split()
    if not ids:
        return {}
    raw = ask.run(["docker", "inspect", *ids], hide=True).stdout
    return {c["Name"].lstrip("/"): c for c in json.loads(raw)}


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _log_tail(ask: Runner, node: str, lines: int = 15) -> str:
    got = ask.run(["docker", "logs", "--tail", str(lines), node], check=False, hide=True)
    return "\n".join((got.stdout + got.stderr).strip().splitlines()[-lines:]) or "(no log lines)"


def _ensure_nodes(act: Runner, ask: Runner, spec: ClusterSpec, image: str, subnet: str,
                  files: ClusterFiles) -> None:
    have = _containers(ask, spec.name)
    for i in spec.numbers:
        argv = plan.run_argv(spec, i, image, subnet, str(files.node_dir(i)))
        node = spec.node(i)
        current = have.get(node)
        if current and current["Config"]["Labels"].get(plan.CONFIG_LABEL) == plan.config_of(argv):
            if not current["State"]["Running"]:
                act.run(["docker", "start", node], hide=True)
            continue
        if current:  # settings changed: a fresh node (and a fresh engine state)
            act.run(["docker", "rm", "-f", "-v", node], hide=True)
            act.run(["docker", "volume", "rm", "-f", spec.volume(i)], hide=True)
        wanted = [(spec.app_port(i), f"app port of {node}"), (spec.https_port(i), f"HTTPS port of {node}")] + \
            ([(spec.ssh_port, "SSH of node 1")] if i == 1 else [])
        for port, what in wanted:
            if not _port_free(port):
                raise ToolkitError(plan.port_taken(port, what))
        act.run(plan.volume_create_argv(spec, i), hide=True)
        act.run(argv, hide=True)


def _wait_engines(ask: Runner, spec: ClusterSpec) -> None:
    pending = set(spec.numbers)
    deadline = time.monotonic() + ENGINE_TIMEOUT
    while pending:
        for i in sorted(pending):
            if ask.run(plan.node_docker(spec, i, "version", "--format", "{{.Server.Version}}"),
                       check=False, hide=True).ok:
                pending.discard(i)
                continue
            running = ask.run(["docker", "inspect", "--format", "{{.State.Running}}", spec.node(i)],
                              check=False, hide=True).stdout.strip()
            if running != "true":
                raise ToolkitError(plan.node_exited(spec.node(i), _log_tail(ask, spec.node(i))))
        if pending and time.monotonic() > deadline:
            node = spec.node(min(pending))
            raise ToolkitError(plan.engine_failed(node, ENGINE_TIMEOUT, _log_tail(ask, node)))
        if pending:
            time.sleep(0.3)


def _form_swarm(act: Runner, ask: Runner, spec: ClusterSpec, subnet: str) -> None:
    states = {i: ask.run(plan.swarm_state_argv(spec, i), hide=True).stdout.split() for i in spec.numbers}
    if states[1][:1] != ["active"]:
        act.run(plan.swarm_init_argv(spec, subnet), hide=True)
    joined = {i for i, s in states.items() if s[:1] == ["active"]}
    steps = plan.join_plan(spec, subnet, joined)
    if not steps:
        return
    token = ask.run(plan.node_docker(spec, 1, "swarm", "join-token", "-q", "worker"), hide=True).stdout.strip()
    act.add_secrets(token)
    for _i, argv in steps:
        act.run(argv, stdin=token + "\n", hide=True, timeout=60)


def wait_ready(ask: Runner, spec: ClusterSpec, timeout: float = SWARM_TIMEOUT) -> list[list[str]]:
    """Poll `docker node ls` on node 1 until every node is Ready; return its rows."""
    deadline = time.monotonic() + timeout
    rows: list[list[str]] = []
    while True:
        got = ask.run(plan.node_ls_argv(spec), check=False, hide=True)
        rows = [line.split("\t") for line in got.stdout.strip().splitlines() if line]
        ready = {r[0] for r in rows if len(r) == 4 and r[3] == "Ready"}
        if all(spec.node(i) in ready for i in spec.numbers):
            return rows
        if time.monotonic() > deadline:
            seen = "; ".join(" ".join(r) for r in rows) or got.stderr.strip() or "nothing"
            raise ToolkitError(f"the lab swarm did not have all {spec.nodes} nodes Ready within {timeout:g}s "
                               f"(node ls: {seen}); see `docker logs {spec.node(1)}`, or start over with "
                               f"`inv cluster.down --name {spec.name}` and `inv cluster.up`")
        time.sleep(0.5)


def up(nodes: int = 3, spec: ClusterSpec | None = None, echo: bool = True, out=None) -> ClusterSpec:
    """Bring the lab cluster up (or check that it is); return the spec with its subnet filled in."""
    spec = spec or ClusterSpec(nodes=nodes)
    plan.validate(spec)
    act, ask = _runners(echo, out)
    for tool in ("docker", "docker-registry", "ssh-keygen"):
        if not shutil.which(tool):
            raise ToolkitError(plan.lab_missing(f"the program {tool}"))
    if not cluster_registry.config_file().exists():
        raise ToolkitError(plan.lab_missing(f"the lab registry config {cluster_registry.config_file()}"))
    files = ClusterFiles(spec.name)
    cluster_state.ensure_keys(ask, spec, files)
    image = node_image(ask, act)
    subnet = _network_subnet(ask, spec)
    if subnet is None:
        subnet = spec.subnet or plan.choose_subnet(_used_subnets(ask))
        act.run(plan.network_create_argv(spec, subnet), hide=True)
    spec = ClusterSpec(**{**spec.__dict__, "subnet": subnet})
    _ensure_nodes(act, ask, spec, image, subnet, files)
    _wait_engines(ask, spec)
    cluster_registry.ensure(files, plan.gateway(subnet), spec.registry_port, act._say)
    try:
        _form_swarm(act, ask, spec, subnet)
    except CommandFailed as exc:
        raise ToolkitError(f"forming the lab swarm failed: {exc}\nlast log lines of {spec.node(1)}:\n"
                           f"{_log_tail(ask, spec.node(1))}") from None
    wait_ready(ask, spec)
    cluster_state.write_known_hosts(spec, files)
    (files.dir / "spec.json").write_text(json.dumps(spec.__dict__, indent=1) + "\n")
    return spec


def load_spec(name: str = "djlab") -> ClusterSpec:
    """The spec a previous `up` recorded (raises a ToolkitError naming the fix when there is none)."""
    path = ClusterFiles(name).dir / "spec.json"
    try:
        return ClusterSpec(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        raise ToolkitError(f"no lab cluster named {name} is up ({path} is missing); run `inv cluster.up`") from None


def down(name: str | None = None, echo: bool = True, out=None) -> list[str]:
    """Remove the cluster ``name`` (every lab cluster when None) and all it made; return what was removed."""
    act, ask = _runners(echo, out)
    sel = f"label={plan.CLUSTER_LABEL}={name}" if name else f"label={plan.LABEL}=cluster"
    removed = []
    names = {name} if name else set(cluster_state.existing_names())
    containers = _containers(ask, name)
    for c in containers.values():
        names.add(c["Config"]["Labels"].get(plan.CLUSTER_LABEL, ""))
    if not name:
        names.update(cluster_registry.endpoints().values())
    if containers:
        act.run(["docker", "rm", "-f", "-v", *sorted(containers)], hide=True)
        removed += sorted(containers)
    vols = ask.run(["docker", "volume", "ls", "-q", "--filter", sel], hide=True).stdout.split()
    if vols:
        act.run(["docker", "volume", "rm", "-f", *vols], hide=True)
        removed += vols
    nets = ask.run(["docker", "network", "ls", "-q", "--filter", sel], hide=True).stdout.split()
    if nets:
        act.run(["docker", "network", "rm", *nets], hide=True)
        removed += [f"network {n}" for n in nets]
    for cname in sorted(n for n in names if n):
        files = ClusterFiles(cname)
        if cluster_registry.stop(files):
            removed.append(f"registry endpoint of {cname}")
        removed += _remove_cgroups(cname)
        if files.dir.exists():
            shutil.rmtree(files.dir)
            removed.append(str(files.dir))
    return removed


def _remove_cgroups(name: str) -> list[str]:
    """The node engines' cgroup parents (``/<name>-node<i>``) outlive the nodes: remove the empty trees."""
    gone = []
    for parent in sorted(Path("/sys/fs/cgroup").glob(f"*/{name}-node*")):
        for d in sorted((p for p in parent.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [parent]:
            try:
                d.rmdir()
            except OSError:
                pass
        if not parent.exists():
            gone.append(str(parent))
    return [f"cgroups /{name}-node* ({len(gone)} dirs)"] if gone else []


def status(name: str = "djlab") -> list[str]:
    """One line per node: container state, swarm role, availability, readiness, loopback ports."""
    _act, ask = _runners(echo=False)
    spec = load_spec(name)
    containers = _containers(ask, name)
    got = ask.run(plan.node_ls_argv(spec), check=False, hide=True)
    swarm = {r[0]: r for r in (line.split("\t") for line in got.stdout.splitlines()) if len(r) == 4}
    lines = []
    for i in spec.numbers:
        node = spec.node(i)
        c = containers.get(node)
        state = c["State"]["Status"] if c else "missing"
        row = swarm.get(node)
        role = (row[1] or "Worker") if row else "?"
        avail, ready = (row[2], row[3]) if row else ("?", "unknown")
        ports = f"app 127.0.0.1:{spec.app_port(i)}, https 127.0.0.1:{spec.https_port(i)}"
        if i == 1:
            ssh = "ok" if cluster_registry.answers("127.0.0.1", spec.ssh_port) else "closed"
            ports += f", ssh 127.0.0.1:{spec.ssh_port} ({ssh})"
        lines.append(f"{node}  container={state}  role={role}  availability={avail}  status={ready}  {ports}")
    return lines
