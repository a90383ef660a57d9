"""Cold provisioning on a *fresh machine*, measured for real: a nested "machine" container.

The machine is a Debian 12 (bookworm) rootfs made by the lab's own debootstrap code, run with the
nested-engine flags from LAB.md. Inside it: Python and the host tools are installed (the premise of the
issue: a fresh Debian machine with Python), the repository is copied in (git archive HEAD), then
`inv lab.up` runs cold: apt-get install docker.io & co, start dockerd, debootstrap the trixie base,
build the stand-ins, registry, sshd, swarm init. Then a second `inv lab.up`, `inv lab.status`,
optionally the lab's own tests inside, then `inv lab.down --yes`, and a check that nothing of the lab is
left inside the machine (no dockerd/registry/sshd process, no lab dir, no plugin link). The machine
container and its image are removed afterwards.

    python bench/lab_fresh_machine.py [--tests] [--keep]
"""

from __future__ import annotations

import argparse
import io
import json
import secrets
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BASE = "djdeploy-fresh/debian:12-slim"
LABEL = {"djdeploy.test": "lab-fresh"}
PIP_MOUNTS = ("/opt/wheels", "/opt/pypi", "/opt/pypi-more")
CA = "/etc/ssl/certs/ca-certificates.crt"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build_machine_image(runner):
    from deploy.lab import baseimage

    return baseimage.build(runner, [BASE], "fresh-machine-bench", say=log)


def start_machine(client, name):
    """`docker run` through the CLI: the SDK cannot express systempaths=unconfined (a client-side option).

    --init: a real machine has an init that reaps orphans (the lab also copes without one: zombies count as stopped).
    """
    argv = ["docker", "run", "-d", "--name", name, "--hostname", "fresh", "--workdir", "/work", "--init", "--label", "djdeploy.test=lab-fresh",
            "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--security-opt", "seccomp=unconfined",
            "--security-opt", "apparmor=unconfined", "--security-opt", "systempaths=unconfined",
            "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/var/lib/docker:exec", "-v", f"{CA}:/host-ca.crt:ro"]
    for path in PIP_MOUNTS:
        if Path(path).exists():
            argv += ["-v", f"{path}:{path}:ro"]
    subprocess.run(argv + [BASE, "sleep", "infinity"], check=True, capture_output=True, text=True)
    return client.containers.get(name)


def sh(machine, script, env=None, timeout_note=""):
    """Run a bash script inside the machine, streaming its output; return (seconds, exit code, output)."""
    started = time.monotonic()
    exec_id = machine.client.api.exec_create(machine.id, ["bash", "-euo", "pipefail", "-c", script],
                                             environment=env or {}, workdir="/work")
    chunks = []
    for chunk in machine.client.api.exec_start(exec_id, stream=True):
        text = chunk.decode(errors="replace")
        chunks.append(text)
        sys.stdout.write(text)
        sys.stdout.flush()
    code = machine.client.api.exec_inspect(exec_id)["ExitCode"]
    return time.monotonic() - started, code, "".join(chunks)


def repo_archive() -> bytes:
    return subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=ROOT, check=True,
                          capture_output=True).stdout


PIP_ENV = {"PIP_CERT": "/host-ca.crt", "PIP_FIND_LINKS": "/opt/wheels", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
           "PIP_EXTRA_INDEX_URL": "file:///opt/pypi/simple file:///opt/pypi-more/simple"}


def run(tests: bool = False, keep: bool = False, keep_image: bool = False) -> dict:
    """The whole fresh-machine run; returns the report (also written to bench/results/)."""
    from invoke import Context

    from deploy.core.engine import client as docker_client
    from deploy.core.runner import Runner

    client = docker_client()
    runner = Runner(ctx=Context(), echo=False)
    report = {}
    name = f"djdeploy-fresh-{secrets.token_hex(3)}"
    machine = None
    try:
        if not client.images.list(name=BASE):
            report["machine_image_s"] = round(build_machine_image(runner), 1)
        machine = start_machine(client, name)
        log(f"machine {name} started")
        seconds, code, _ = sh(machine, (
            "mkdir -p /work /etc/docker\n"
            # Nested engine only (LAB.md): its own cgroup parent, so it does not collide with the host's.
            f"echo '{{\"cgroup-parent\": \"/{name}\"}}' > /etc/docker/daemon.json\n"
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
            "python3 python3-venv ca-certificates >/dev/null\n"
            "cp /host-ca.crt /usr/local/share/ca-certificates/host-ca.crt && update-ca-certificates >/dev/null\n"
            "python3 -m venv /opt/venv\n"))
        assert code == 0, "preparing Python failed"
        report["prepare_python_s"] = round(seconds, 1)
        machine.put_archive("/work", repo_archive())
        seconds, code, _ = sh(machine, "/opt/venv/bin/pip install -q -r requirements-dev.txt", env=PIP_ENV)
        assert code == 0, "pip install failed"
        report["prepare_pip_s"] = round(seconds, 1)
        path_env = {"PATH": "/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

        seconds, code, out = sh(machine, "python -m invoke lab.up", env=path_env)
        assert code == 0, "cold lab.up failed"
        report["cold_lab_up_s"] = round(seconds, 1)
        report["cold_log"] = [ln for ln in out.splitlines() if "built in" in ln or ln.startswith(("lab up",
                              "installing", "starting dockerd"))]
        seconds, code, _ = sh(machine, "python -m invoke lab.up --quiet", env=path_env)
        assert code == 0
        report["second_lab_up_s"] = round(seconds, 2)
        _, code, out = sh(machine, "python -m invoke lab.status", env=path_env)
        report["status"] = out.strip().splitlines()
        if tests:
            seconds, code, out = sh(machine, "python -m pytest -q -p no:cacheprovider tests/unit/test_lab.py "
                                             "tests/unit/test_lab_up.py tests/lab", env={**path_env, "CI": "true"})
            report["tests"] = {"exit": code, "seconds": round(seconds, 1), "summary": out.strip().splitlines()[-1]}
        _, code, out = sh(machine, "python -m invoke lab.down --yes", env=path_env)
        assert code == 0, "lab.down failed"
        _, code, out = sh(machine, (
            "left=0\n"
            # no procps in a minbase system: read /proc/<pid>/{comm,stat}; zombies are dead, not left
            "for d in /proc/[0-9]*; do c=$(cat \"$d/comm\" 2>/dev/null || true); "
            "s=$(sed 's/.*) //' \"$d/stat\" 2>/dev/null | cut -c1 || true); [ \"$s\" != Z ] || continue; "
            "case \"$c\" in dockerd|containerd|docker-registry|sshd) echo \"left: process $c ($d)\"; left=1;; "
            "esac; done\n"
            "[ ! -e /root/.local/state/djdeploy-lab ] || { echo 'left: lab dir'; left=1; }\n"
            "[ ! -L /root/.docker/cli-plugins/docker-compose ] || { echo 'left: compose plugin link'; left=1; }\n"
            "exit $left\n"))
        report["down_leaves_nothing"] = code == 0
        report["down_check"] = out.strip().splitlines()
    finally:
        if machine is not None and not keep:
            machine.remove(force=True, v=True)
        if not keep_image:
            for image in client.images.list(name=BASE):
                client.images.remove(image.id, force=True)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "lab_fresh_machine.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", action="store_true", help="also run the lab's own tests inside the machine")
    parser.add_argument("--keep", action="store_true", help="keep the machine container (debugging)")
    parser.add_argument("--keep-image", action="store_true", help="keep the machine image for the next run")
    args = parser.parse_args()
    print(json.dumps(run(args.tests, args.keep, args.keep_image), indent=2))


if __name__ == "__main__":
    main()
