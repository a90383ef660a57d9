"""A developer's laptop, simulated: a NON-ROOT user with its own checkout and virtualenv (tests/lab is on sys.path).

``LaptopUser`` is a real Linux account made for one test session (useradd; removed with its home at the end),
optionally in the docker group. Its commands run through ``runuser`` with a clean environment (HOME, USER,
PATH = its venv first), optionally inside another network namespace (``nsenter -n``: the nested engine's
"machine", where 127.0.0.1 is that machine's loopback, as Docker Desktop forwards published ports).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKOUT = ("tasks.py", "deploy", "project", "djdeploy_django", "pyproject.toml", "Dockerfile", "docker-entrypoint.sh", ".dockerignore", "README.md",
            "docker-compose.yml", "docker-compose.dev.yml", ".env.example", "requirements-dev.txt", "pytest.ini")
SYSTEM_PYTHON = "/usr/bin/python3"   # what a laptop has; the root's pyenv under /root is not readable by others
FIRST_COMMAND = "python3 -m pip install -r requirements-dev.txt && inv lab.up && inv up"


class LaptopUser:
    def __init__(self, name: str, docker_group: bool = True):
        self.name = name
        self.home = Path("/home") / name
        self.repo = self.home / "djdeploy"
        self.venv = self.home / "venv"
        groups = ["--groups", "docker"] if docker_group else []
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", *groups, name], check=True,
                       capture_output=True, timeout=60)

    def env(self, **extra: str) -> dict:
        passthrough = {k: os.environ[k] for k in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "SSL_CERT_DIR",
                                                  "PIP_FIND_LINKS", "PIP_DEFAULT_TIMEOUT") if k in os.environ}
        return {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name, "LANG": "C.UTF-8",
                "PATH": f"{self.venv}/bin:/usr/local/bin:/usr/bin:/bin", "PYTHONUNBUFFERED": "1",
                "PIP_DISABLE_PIP_VERSION_CHECK": "1", **passthrough, **extra}

    def run(self, script: str, env: dict | None = None, timeout: float = 900, netns_pid: int | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
        """``bash -c script`` as this user (in ``cwd``, default its checkout); never raises on the exit code."""
        wrapped = ["runuser", "-u", self.name, "--", "env", "-i", *[f"{k}={v}" for k, v in (env or self.env()).items()],
                   "bash", "-c", f"cd {cwd or self.repo} && {script}"]
        if netns_pid:
            wrapped = ["nsenter", "--target", str(netns_pid), "--net", "--", *wrapped]
        started = time.monotonic()
        out = subprocess.run(wrapped, capture_output=True, text=True, timeout=timeout)
        out.seconds = time.monotonic() - started
        return out

    def make_checkout(self) -> Path:
        """The user's own clone of the project (files copied from the tree under test, committed as the user)."""
        for rel in CHECKOUT:
            src, dst = ROOT / rel, self.repo / rel
            if not src.exists():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "staticfiles", ".env",
                                                                        "*.env"))
            else:
                shutil.copy2(src, dst)
        subprocess.run(["chown", "-R", f"{self.name}:{self.name}", str(self.home)], check=True, timeout=60)
        out = self.run("git init -q && git add -A && git -c user.name=laptop -c user.email=laptop@example.invalid "
                       "commit -q -m checkout", cwd=self.repo)
        assert out.returncode == 0, out.stderr
        return self.repo

    def make_venv(self) -> subprocess.CompletedProcess:
        """A virtualenv of the system Python, so that `python3 -m pip install` works without root. Without
        Debian's python3-venv (no ensurepip), one that sees the system's packages and pip instead."""
        out = self.run(f"{SYSTEM_PYTHON} -m venv {self.venv}", cwd=self.home, timeout=120)
        if out.returncode != 0:
            out = self.run(f"rm -rf {self.venv} && {SYSTEM_PYTHON} -m venv --without-pip --system-site-packages "
                           f"{self.venv}", cwd=self.home, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        return out

    def remove(self) -> None:
        subprocess.run(["userdel", "--remove", self.name], capture_output=True, timeout=60)


def user_name(tag: str) -> str:
    return f"djl{tag}{os.getpid() % 100000}"


# ---- a laptop "with internet": a nested engine whose Docker Hub is a registry mirror we pre-load ----------------

MIRRORED = (("debian:trixie-slim", "library/debian:trixie-slim"), ("postgres:17-trixie", "library/postgres:17-trixie"))
LABEL = "djdeploy.test"
# What the mirror serves must look official: the lab's labels blanked (an empty djdeploy.lab is no lab label).
UNLABEL = "".join(f'LABEL {k}=""\n' for k in ("djdeploy.lab", "djdeploy.lab.hash", "djdeploy.lab.version",
                                             "djdeploy.lab.recipe"))


def host_nameserver() -> str:
    for line in Path("/etc/resolv.conf").read_text().splitlines():
        if line.startswith("nameserver") and not line.split()[1].startswith("127."):
            return line.split()[1]
    return "8.8.8.8"


class NestedLaptop:
    """A network + a registry mirror (two docker-registry processes on one storage: 127.0.0.1 to pre-load, the
    network's gateway for the nested engine) + a nested dockerd (the cluster node image, no sshd) that uses it as
    ``registry-mirrors``. ``netns_pid`` is the nested machine's network namespace; DOCKER_HOST is its TCP port."""

    DOCKER_HOST = "tcp://127.0.0.1:2375"

    def __init__(self, cli, name: str, workdir: Path, say=print):
        self.cli, self.name, self.workdir, self.say = cli, name, workdir, say
        self.procs, self.container, self.network, self.volume = [], None, None, None

    def start(self) -> "NestedLaptop":
        labels = {LABEL: "laptop", "djdeploy.owner": str(os.getpid())}
        self.network = self.cli.networks.create(f"{self.name}-net", driver="bridge", labels=labels)
        self.network.reload()
        self.gateway = self.network.attrs["IPAM"]["Config"][0]["Gateway"]
        self.push_port, self.mirror_port = _free_port(), _free_port()
        self._start_mirror()
        self._preload()
        image = self._engine_image()
        self.volume = self.cli.volumes.create(f"{self.name}-docker", labels=labels)
        from deploy.lab.cluster_plan import NESTED_ENGINE_FLAGS

        argv = ["docker", "run", "-d", "--name", f"{self.name}-engine", "--hostname", "laptop",
                "--network", self.network.name, *NESTED_ENGINE_FLAGS, "-v", f"{self.volume.name}:/var/lib/docker",
                "--label", f"{LABEL}=laptop", "--entrypoint", "/usr/bin/tini", image, "-g", "--",
                "dockerd", f"--cgroup-parent=/{self.name}", f"--registry-mirror=http://{self.gateway}:{self.mirror_port}",
                f"--insecure-registry={self.gateway}:{self.mirror_port}", f"--dns={host_nameserver()}",
                "-H", "unix:///var/run/docker.sock", "-H", "tcp://127.0.0.1:2375"]
        cid = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120).stdout.strip()
        self.container = self.cli.containers.get(cid)
        self._wait_engine()
        self.netns_pid = self.container.attrs["State"]["Pid"]
        return self

    def _start_mirror(self) -> None:
        storage = self.workdir / "mirror"
        storage.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "mirror.yml"
        config.write_text(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {storage}\n"
                          f"http:\n  addr: 127.0.0.1:{self.push_port}\n  secret: laptop-test\n")
        for addr in (f"127.0.0.1:{self.push_port}", f"{self.gateway}:{self.mirror_port}"):
            log = open(self.workdir / f"mirror-{addr.replace(':', '_')}.log", "wb")
            self.procs.append(subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log,
                                               stderr=subprocess.STDOUT, env={**os.environ, "REGISTRY_HTTP_ADDR": addr}))
        for host, port in (("127.0.0.1", self.push_port), (self.gateway, self.mirror_port)):
            _wait(lambda: _answers(host, port), 20, f"the mirror registry on {host}:{port}")

    def _preload(self) -> None:
        import io

        for src, name in MIRRORED:
            ref = f"127.0.0.1:{self.push_port}/{name}"
            self.cli.images.build(fileobj=io.BytesIO(f"FROM {src}\n{UNLABEL}".encode()), tag=ref, rm=True,
                                  labels={LABEL: "laptop"})
            for event in self.cli.api.push(ref, stream=True, decode=True):
                assert "error" not in event, event
            self.cli.images.remove(ref)
            self.say(f"mirror: {name} from the lab's {src}")

    def _engine_image(self) -> str:
        """The cluster node image (Debian's docker.io in the lab base), under this test's own name."""
        from deploy.lab import cluster_plan

        files = {p.name: p.read_bytes() for p in sorted(cluster_plan.NODE_DIR.iterdir()) if p.is_file()}
        tag = "djdeploy-test-laptop-engine:" + cluster_plan.node_image_tag(files).split(":")[1]
        try:
            self.cli.images.get(tag)
        except Exception:  # noqa: BLE001 - ImageNotFound: build it once (layer cache shared with the cluster's)
            self.say(f"building {tag} from {cluster_plan.NODE_DIR}")
            self.cli.images.build(path=str(cluster_plan.NODE_DIR), tag=tag, rm=True, labels={LABEL: "laptop"})
        return tag

    def docker(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """The docker CLI of the nested engine (run inside its container)."""
        return subprocess.run(["docker", "exec", self.container.id, "docker", *args], capture_output=True, text=True,
                              timeout=timeout)

    def _wait_engine(self) -> None:
        def ok():
            self.container.reload()
            if self.container.status != "running":
                raise AssertionError(f"the nested engine exited:\n{self.container.logs(tail=30).decode()}")
            return self.docker("version", "--format", "{{.Server.Version}}", timeout=30).returncode == 0
        _wait(ok, 90, "the nested engine to answer")

    def images(self) -> dict:
        """{repo:tag: (id, djdeploy.lab label)} of the nested engine."""
        out = self.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.split("\n")
        found = {}
        for line in filter(None, out):
            ref, image_id = line.split()
            label = self.docker("image", "inspect", "--format", '{{index .Config.Labels "djdeploy.lab"}}', ref)
            found[ref] = (image_id, label.stdout.strip().replace("<no value>", ""))
        return found

    def stop(self) -> None:
        if self.container is not None:
            self.container.remove(force=True, v=True)
        if self.volume is not None:
            self.volume.remove(force=True)
        for proc in self.procs:
            proc.terminate()
            proc.wait(timeout=10)
        if self.network is not None:
            self.network.remove()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _wait(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.5)
