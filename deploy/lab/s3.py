"""The lab's S3-compatible object store: moto's server (image djdeploy-lab/moto-s3:5.1) on a labelled network.

Why moto and not Ceph's radosgw (both packaged by Debian trixie): one process that is ready in seconds, where
radosgw needs a Ceph cluster (monitor, OSDs, keyrings) behind it. Moto keeps objects in memory: it stands in
for a managed object store OUTSIDE the app's stack (and outside the cluster's nodes), so uploads survive the
app's deploys, rollbacks and lost nodes, but not a restart of this container (``ensure`` never restarts a
running one). Moto accepts any credentials: the lab proves they reach the app, not that the store checks them.

Its API is published on 127.0.0.1 (``port``; 0: engine-chosen); app containers reach it as ``http://s3:5000``
once it is attached to their network (``connect_argv``: e.g. a stack's attachable overlay). Builders are pure;
``ensure``/``remove`` run them through the Runner.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass

from deploy.core.errors import ToolkitError
from deploy.lab import paths, procs

IMAGE = "djdeploy-lab/moto-s3:5.1"
PORT = 5000                 # inside the container
ALIAS = "s3"                # its name on the networks it is attached to
BUCKET = "djdeploy-media"
WAIT = 30.0
HARDENED = ["--read-only", "--tmpfs", "/tmp:rw,nosuid,nodev,mode=1777", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges:true", "--memory", "512m", "--pids-limit", "256",
            "--restart", "unless-stopped"]


# Same shape as acme.AcmeSpec (`duplicates` pairs them): each lab service names its own network and containers;
# a shared base class would only rename three one-line properties.
@dataclass(frozen=True)
class S3Spec:
    prefix: str = "djdeploy-lab"
    labels: tuple = ()      # (key, value) pairs on the network and the container
    port: int = 0           # published on 127.0.0.1; 0: a free port chosen by the engine

    @property
    def network(self) -> str:
        return f"{self.prefix}-s3"

    @property
    def container(self) -> str:
        return f"{self.prefix}-s3"


def lab_spec(lab_id: str = str(paths.LAB_DIR)) -> S3Spec:
    return S3Spec(labels=((paths.LABEL, lab_id),))


def problems(spec: S3Spec) -> list[str]:
    """Pure: what is wrong with ``spec`` (one line each)."""
    out = []
    if not 0 <= spec.port <= 65535:
        out.append(f"port: {spec.port} is not a TCP port (1-65535, or 0)")
    if not spec.prefix or not spec.prefix.replace("-", "").replace("_", "").isalnum():
        out.append(f"prefix: {spec.prefix!r} must be letters, digits, '-' or '_'")
    return out


def _labels(spec: S3Spec) -> list[str]:
    return [a for key, value in spec.labels for a in ("--label", f"{key}={value}")]


def network_create_argv(spec: S3Spec) -> list[str]:
    return ["docker", "network", "create", "--driver", "bridge", *_labels(spec), spec.network]


def run_argv(spec: S3Spec) -> list[str]:
    """Pure: the store, read-only, no capabilities, its API on 127.0.0.1 only."""
    return ["docker", "run", "--detach", "--name", spec.container, "--network", spec.network,
            "--network-alias", ALIAS, *_labels(spec), *HARDENED,
            "--publish", f"127.0.0.1:{spec.port or ''}:{PORT}", IMAGE]


def connect_argv(spec: S3Spec, network: str) -> list[str]:
    """Pure: attach the store to another network as ``s3`` (e.g. a stack's attachable overlay)."""
    return ["docker", "network", "connect", "--alias", ALIAS, network, spec.container]


def disconnect_argv(spec: S3Spec, network: str) -> list[str]:
    return ["docker", "network", "disconnect", "--force", network, spec.container]


def endpoint_url(host: str = ALIAS, port: int = PORT) -> str:
    """Pure: the S3 endpoint (from a container on its network: ``http://s3:5000``; from the host: 127.0.0.1)."""
    return f"http://{host}:{port}"


def _state(runner, name: str) -> bool | None:
    """True running, False exists but stopped, None absent."""
    out = runner.run(["docker", "container", "inspect", "--format", "{{.State.Running}}", name], check=False,
                     hide=True)
    return None if not out.ok else out.stdout.strip() == "true"


def published(runner, spec: S3Spec) -> int:
    out = runner.run(["docker", "port", spec.container, f"{PORT}/tcp"], hide=True).stdout.split()
    return int(out[0].rsplit(":", 1)[1])


def make_bucket(port: int, bucket: str) -> None:
    """Create ``bucket`` (moto takes an unsigned PUT; an existing bucket of ours is fine)."""
    request = urllib.request.Request(f"{endpoint_url('127.0.0.1', port)}/{bucket}", method="PUT", data=b"")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        opener.open(request, timeout=10).close()
    except urllib.error.HTTPError as exc:
        if exc.code != 409:
            raise ToolkitError(f"the lab object store refused to create bucket {bucket}: HTTP {exc.code}") from None


def _answers(port: int) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        opener.open(f"{endpoint_url('127.0.0.1', port)}/", timeout=3).close()
        return True
    except (OSError, ValueError):
        return False


def ensure(runner, spec: S3Spec, bucket: str = BUCKET, say=print) -> dict:
    """Start what is missing (network, container), wait until S3 answers, create ``bucket``; return the record
    of what exists (for the lab's state file). A running store is kept (its objects live in memory)."""
    bad = problems(spec)
    if bad:
        raise ToolkitError(f"lab object store: {'; '.join(bad)}")
    if not runner.run(["docker", "network", "inspect", spec.network], check=False, hide=True).ok:
        runner.run(network_create_argv(spec), hide=True)
    state = _state(runner, spec.container)
    if state is False:
        runner.run(["docker", "start", spec.container], hide=True)
    elif state is None:
        runner.run(run_argv(spec), hide=True)
        say(f"started {spec.container} ({IMAGE})")
    port = published(runner, spec)
    procs.wait_for(lambda: _answers(port), WAIT, f"the lab object store on 127.0.0.1:{port}",
                   detail=lambda: runner.run(["docker", "logs", "--tail", "20", spec.container], check=False,
                                             hide=True).stderr)
    make_bucket(port, bucket)
    return {"network": spec.network, "containers": [spec.container], "endpoint": endpoint_url("127.0.0.1", port),
            "internal_endpoint": endpoint_url(), "bucket": bucket}


def remove(runner, spec: S3Spec) -> None:
    """Remove the container and its network (what ``ensure`` made)."""
    runner.run(["docker", "rm", "--force", spec.container], check=False, hide=True)
    runner.run(["docker", "network", "rm", spec.network], check=False, hide=True)


def status_row(runner, spec: S3Spec) -> tuple[str, bool, str]:
    """("s3", up?, description) for `inv lab.status`."""
    if not _state(runner, spec.container):
        return ("s3", False, f"DOWN: {spec.container} not running (`inv lab.up` starts it)")
    port = published(runner, spec)
    return ("s3", True, f"moto S3 at {endpoint_url('127.0.0.1', port)} (in containers: {endpoint_url()} once "
                        f"attached), bucket {BUCKET}")
