"""Files of a lab cluster on the host: keys, pinned host keys, the registry endpoint's pid and log.

Everything lives in ``LAB_DIR/cluster/<name>/`` (mode 0700) and goes away with ``cluster.down``:

    id_ed25519, id_ed25519.pub   the cluster's client key (Fabric logs in as root with it)
    known_hosts                  the pinned host key of node 1 as ``[127.0.0.1]:<ssh_port>``
    nodes/<i>/ssh_host_ed25519_key, nodes/<i>/authorized_keys   mounted read-only into node i
    registry.pid, registry.log   the registry endpoint on the cluster network's gateway
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploy.lab import paths
from deploy.lab.cluster_plan import ClusterSpec, known_hosts_line


def root() -> Path:
    return paths.LAB_DIR / "cluster"


@dataclass(frozen=True)
class ClusterFiles:
    name: str

    @property
    def dir(self) -> Path:
        return root() / self.name

    @property
    def key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    def node_dir(self, i: int) -> Path:
        return self.dir / "nodes" / str(i)

    def host_key(self, i: int) -> Path:
        return self.node_dir(i) / "ssh_host_ed25519_key"

    # One property per file, all alike (`duplicates` pairs them as boilerplate): each names one path.
    @property
    def registry_pid(self) -> Path:
        return self.dir / "registry.pid"

    @property
    def registry_log(self) -> Path:
        return self.dir / "registry.log"


def keygen_argv(path: Path, comment: str) -> list[str]:
    return ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)]


def ensure_keys(runner, spec: ClusterSpec, files: ClusterFiles) -> None:
    """Create the client key and one host key per node, once; later runs reuse them."""
    files.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    files.dir.chmod(0o700)
    if not files.key.exists():
        runner.run(keygen_argv(files.key, f"djdeploy-{spec.name}"), hide=True)
    pub = files.key.with_suffix(".pub").read_text()
    for i in spec.numbers:
        node_dir = files.node_dir(i)
        node_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not files.host_key(i).exists():
            runner.run(keygen_argv(files.host_key(i), spec.node(i)), hide=True)
        auth = node_dir / "authorized_keys"
        if not auth.exists() or auth.read_text() != pub:
            auth.write_text(pub)
        auth.chmod(0o644)


def write_known_hosts(spec: ClusterSpec, files: ClusterFiles) -> None:
    """Pin node 1's host key for ``[127.0.0.1]:<ssh_port>`` (rewritten on every `up`)."""
    pub = files.host_key(1).with_suffix(".pub").read_text()
    files.known_hosts.write_text(known_hosts_line(spec.ssh_port, pub))
    files.known_hosts.chmod(0o600)


def existing_names() -> list[str]:
    base = root()
    return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
