"""The lab's ACME CA: Pebble and pebble-challtestsrv (image djdeploy-lab/pebble:2.6) on a labelled network.

Pebble validates HTTP-01 for real (never PEBBLE_VA_ALWAYS_VALID) by connecting to port ``http_port`` of the
address challtestsrv answers for the name: ``target_ipv4`` (default: the network's gateway, i.e. this host,
where the lab proxy's published HTTP port answers) or a per-name address (``set_address``). Certificates live
``validity`` seconds (default 300, so a renewal happens during a test). Pebble makes a new CA root at every
start: ``ensure`` never restarts a running Pebble. Its ACME API, management API and challtestsrv's management
API are published on 127.0.0.1 only. Builders are pure; ``ensure``/``remove`` run them through the Runner.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import ssl
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from deploy.core.errors import ToolkitError
from deploy.lab import paths, procs

IMAGE = "djdeploy-lab/pebble:2.6"
API_PORT, MGMT_PORT, DNS_MGMT_PORT = 14000, 15000, 8055   # inside the containers
TLS_ROOT = "/run/pebble/tls/root.pem"                     # the root of Pebble's own HTTPS API certificate
DEFAULT_DIR = Path.home() / ".local" / "state" / "djdeploy-lab"
ENV_PORT = "DJDEPLOY_LAB_ACME_PORT"
WAIT = 30.0


@dataclass(frozen=True)
class AcmeSpec:
    prefix: str = "djdeploy-lab"
    labels: tuple = ()              # (key, value) pairs on the network and both containers
    http_port: int = 8080           # where Pebble connects for HTTP-01
    target_ipv4: str | None = None  # what challtestsrv answers for every name; None: the network's gateway
    validity: int = 300             # certificate lifetime, seconds
    api_port: int = 0               # published on 127.0.0.1; 0: a free port chosen by the engine
    mgmt_port: int = 0
    dns_mgmt_port: int = 0
    nonce_reject: int = 0           # percent of good nonces Pebble rejects (its default is 5)
    tls_names: tuple = ()           # more names or IPv4 addresses in the API's certificate (clients by address)

    @property
    def network(self) -> str:
        return f"{self.prefix}-acme"

    @property
    def pebble(self) -> str:
        return f"{self.prefix}-pebble"

    @property
    def challtestsrv(self) -> str:
        return f"{self.prefix}-challtestsrv"


def lab_spec(lab_id: str = str(paths.LAB_DIR)) -> AcmeSpec:
    """The lab's own instance: fixed names and port 14000 for the default lab dir; a second (isolated) lab gets
    names suffixed with a hash of its directory and engine-chosen ports, so two labs never collide."""
    default = os.path.realpath(lab_id) == os.path.realpath(DEFAULT_DIR)
    suffix = "" if default else "-" + hashlib.sha256(lab_id.encode()).hexdigest()[:8]
    port = int(os.environ.get(ENV_PORT) or (API_PORT if default else 0))
    return AcmeSpec(prefix=f"djdeploy-lab{suffix}", labels=((paths.LABEL, lab_id),), api_port=port,
                    mgmt_port=port + 1 if port else 0, dns_mgmt_port=port + 2 if port else 0)


def problems(spec: AcmeSpec) -> list[str]:
    """Pure: what is wrong with ``spec`` (one line each)."""
    out = []
    for name in ("http_port", "api_port", "mgmt_port", "dns_mgmt_port"):
        value = getattr(spec, name)
        if not 0 <= value <= 65535 or (name == "http_port" and value == 0):
            out.append(f"{name}: {value} is not a TCP port (1-65535{'' if name == 'http_port' else ', or 0'})")
    if spec.target_ipv4 is not None:
        try:
            ipaddress.IPv4Address(spec.target_ipv4)
        except ValueError:
            out.append(f"target_ipv4: {spec.target_ipv4!r} is not an IPv4 address like 172.17.0.1")
    if not 30 <= spec.validity <= 90 * 86400:
        out.append(f"validity: {spec.validity} s is outside 30 s .. 90 days")
    if not 0 <= spec.nonce_reject <= 100:
        out.append(f"nonce_reject: {spec.nonce_reject} is not a percentage")
    out += [f"tls_names: {n!r} is not a host name or an IPv4 address" for n in spec.tls_names
            if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", n)]
    return out


def _labels(spec: AcmeSpec) -> list[str]:
    return [a for key, value in spec.labels for a in ("--label", f"{key}={value}")]


def _publish(port: int, inside: int) -> list[str]:
    return ["--publish", f"127.0.0.1:{port or ''}:{inside}"]


HARDENED = ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
            "--memory", "256m", "--pids-limit", "256", "--restart", "unless-stopped"]


def network_create_argv(spec: AcmeSpec) -> list[str]:
    return ["docker", "network", "create", "--driver", "bridge", *_labels(spec), spec.network]


def challtestsrv_argv(spec: AcmeSpec, target_ipv4: str) -> list[str]:
    """Pure: challtestsrv as Pebble's DNS: A queries answer ``target_ipv4``, no AAAA, no challenge servers."""
    return ["docker", "run", "--detach", "--name", spec.challtestsrv, "--network", spec.network, *_labels(spec),
            *HARDENED, *_publish(spec.dns_mgmt_port, DNS_MGMT_PORT), IMAGE,
            "pebble-challtestsrv", "-defaultIPv4", target_ipv4, "-defaultIPv6", "", "-dns01", ":8053",
            "-management", f":{DNS_MGMT_PORT}", "-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", ""]


def pebble_argv(spec: AcmeSpec) -> list[str]:
    """Pure: Pebble with real validation on ``http_port``, challtestsrv as its only DNS, no random VA sleeps,
    no authorization reuse (every order is validated), ``validity``-second certificates."""
    env = {"PEBBLE_HTTP_PORT": spec.http_port, "PEBBLE_CERT_VALIDITY": spec.validity, "PEBBLE_VA_NOSLEEP": 1,
           "PEBBLE_AUTHZREUSE": 0, "PEBBLE_WFE_NONCEREJECT": spec.nonce_reject,
           "PEBBLE_TLS_NAMES": ",".join((spec.pebble, *spec.tls_names))}
    return ["docker", "run", "--detach", "--name", spec.pebble, "--network", spec.network,
            "--network-alias", "pebble", *_labels(spec), *HARDENED,
            "--tmpfs", "/run/pebble:rw,nosuid,nodev,uid=10001,gid=10001,mode=0700",
            *[a for k, v in env.items() for a in ("--env", f"{k}={v}")],
            *_publish(spec.api_port, API_PORT), *_publish(spec.mgmt_port, MGMT_PORT), IMAGE,
            "pebble", "-dnsserver", f"{spec.challtestsrv}:8053"]


def connect_argv(spec: AcmeSpec, network: str, ipv4: str | None = None) -> list[str]:
    """Pure: attach Pebble to another network as ``pebble`` (at ``ipv4`` when given): the cluster's (to validate at
    a node's address), or an attachable overlay a Swarm stack joins (its services then reach https://pebble:14000/dir)."""
    return ["docker", "network", "connect", "--alias", "pebble", *(["--ip", ipv4] if ipv4 else []), network, spec.pebble]


def disconnect_argv(spec: AcmeSpec, network: str) -> list[str]:
    return ["docker", "network", "disconnect", network, spec.pebble]


def directory_url(port: int, host: str = "127.0.0.1") -> str:
    """Pure: the ACME directory URL (from the host: 127.0.0.1 and the published port; from a container on
    the ACME network: host ``pebble`` and port 14000)."""
    return f"https://{host}:{port}/dir"


def gateway(runner, spec: AcmeSpec) -> str:
    out = runner.run(["docker", "network", "inspect", "--format", "{{(index .IPAM.Config 0).Gateway}}",
                      spec.network], hide=True)
    return out.stdout.strip()


def running(runner, spec: AcmeSpec) -> bool:
    """True if this instance's Pebble container runs."""
    return bool(_running(runner, spec.pebble))


def _running(runner, name: str) -> bool | None:
    """True running, False exists but stopped, None absent."""
    out = runner.run(["docker", "container", "inspect", "--format", "{{.State.Running}}", name], check=False,
                     hide=True)
    return None if not out.ok else out.stdout.strip() == "true"


def published(runner, name: str, inside: int) -> int:
    """The 127.0.0.1 port a container publishes for ``inside``."""
    out = runner.run(["docker", "port", name, f"{inside}/tcp"], hide=True).stdout.split()
    return int(out[0].rsplit(":", 1)[1])


def ensure(runner, spec: AcmeSpec, say=print) -> dict:
    """Start what is missing (network, challtestsrv, Pebble), wait until the ACME API answers, return the record
    of what exists (for the lab's state file). A running Pebble is kept: a restart would change the CA root."""
    bad = problems(spec)
    if bad:
        raise ToolkitError(f"lab ACME CA: {'; '.join(bad)}")
    exists = runner.run(["docker", "network", "inspect", spec.network], check=False, hide=True).ok
    if not exists:
        runner.run(network_create_argv(spec), hide=True)
    target = spec.target_ipv4 or gateway(runner, spec)
    for name, argv in ((spec.challtestsrv, challtestsrv_argv(spec, target)), (spec.pebble, pebble_argv(spec))):
        state = _running(runner, name)
        if state is False:
            runner.run(["docker", "start", name], hide=True)
        elif state is None:
            runner.run(argv, hide=True)
            say(f"started {name} ({IMAGE})")
    port = published(runner, spec.pebble, API_PORT)
    procs.wait_for(lambda: _answers(runner, spec, port), WAIT, f"the lab ACME CA on 127.0.0.1:{port}",
                   detail=lambda: runner.run(["docker", "logs", "--tail", "20", spec.pebble], check=False,
                                             hide=True).stderr)
    return {"network": spec.network, "containers": [spec.challtestsrv, spec.pebble], "target_ipv4": target,
            "http_port": spec.http_port, "directory": directory_url(port)}


def _answers(runner, spec: AcmeSpec, port: int) -> bool:
    try:
        return bool(get_json(f"{directory_url(port)}", api_root_pem(runner, spec)).get("newOrder"))
    except (OSError, ValueError, ToolkitError):
        return False


def remove(runner, spec: AcmeSpec) -> None:
    """Remove both containers and the network (what ``ensure`` made)."""
    runner.run(["docker", "rm", "--force", spec.pebble, spec.challtestsrv], check=False, hide=True)
    runner.run(["docker", "network", "rm", spec.network], check=False, hide=True)


def api_root_pem(runner, spec: AcmeSpec) -> str:
    """The root of Pebble's own HTTPS API certificate (made by the container at start; trust it to talk ACME)."""
    out = runner.run(["docker", "exec", spec.pebble, "cat", TLS_ROOT], check=False, hide=True)
    if not out.ok or "BEGIN CERTIFICATE" not in out.stdout:
        raise ToolkitError(f"the lab ACME CA ({spec.pebble}) is not running; run `inv lab.up --deploy`")
    return out.stdout


def _open(url: str, api_root: str, data: bytes | None = None):
    context = ssl.create_default_context(cadata=api_root) if url.startswith("https:") else None
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
    return opener.open(urllib.request.Request(url, data=data), timeout=10)


def get_json(url: str, api_root: str) -> dict:
    with _open(url, api_root) as response:
        return json.loads(response.read())


def ca_pems(runner, spec: AcmeSpec) -> tuple[str, str]:
    """(root, intermediate) PEMs of the CA that signs the certificates (Pebble's management API)."""
    root = api_root_pem(runner, spec)
    port = published(runner, spec.pebble, MGMT_PORT)
    pems = []
    for what in ("roots", "intermediates"):
        with _open(f"https://127.0.0.1:{port}/{what}/0", root) as response:
            pems.append(response.read().decode())
    return pems[0], pems[1]


def set_address(runner, spec: AcmeSpec, name: str, ipv4: str | None) -> None:
    """Make challtestsrv answer ``name`` with ``ipv4`` (None: back to the default address)."""
    port = published(runner, spec.challtestsrv, DNS_MGMT_PORT)
    path, body = ("add-a", {"host": name, "addresses": [ipv4]}) if ipv4 else ("clear-a", {"host": name})
    with _open(f"http://127.0.0.1:{port}/{path}", "", json.dumps(body).encode()) as response:
        if response.status != 200:
            raise ToolkitError(f"challtestsrv refused {path} for {name}: HTTP {response.status}")


def status_row(runner, spec: AcmeSpec) -> tuple[str, bool, str]:
    """("acme", up?, description) for `inv lab.status`."""
    if not (_running(runner, spec.pebble) and _running(runner, spec.challtestsrv)):
        return ("acme", False, f"DOWN: {spec.pebble} / {spec.challtestsrv} not running (`inv lab.up --deploy` starts them)")
    port = published(runner, spec.pebble, API_PORT)
    return ("acme", True, f"Pebble at {directory_url(port)} (HTTP-01 on port {spec.http_port}, "
                          f"{spec.validity}s certificates)")
