"""`inv lab.up`, `inv build`, `inv smoke`, `inv up` and a deploy dry run as a NON-ROOT user in the docker group
(issue 14): a real account (useradd), its own checkout and virtualenv, the CLI run with runuser. Nothing it needs
lives under /root; its lab state, image cache and compose plugin are under its own home."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request

import pytest

from labhelpers import free_port
from laptop import LaptopUser, user_name

pytestmark = pytest.mark.lab
direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def user(docker_client):
    u = LaptopUser(user_name("nr"))
    u.repo_name = f"djdeploy-test-nonroot{os.getpid()}"
    try:
        u.make_checkout()
        u.make_venv()
        check(u.run("python3 -m pip install -q -r requirements-dev.txt"), "pip install")
        yield u
    finally:
        u.run("inv down --volumes --yes", env=u.env(COMPOSE_PROJECT_NAME=u.repo_name), timeout=120)
        for image in docker_client.api.images(name=u.repo_name):
            for tag in image.get("RepoTags") or ():
                docker_client.images.remove(tag, force=True)
        u.remove()


def check(out, what):
    assert out.returncode == 0, f"{what} exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def test_the_local_tasks_work_for_a_user_in_the_docker_group(user):
    env = user.env(APP_IMAGE=user.repo_name, COMPOSE_PROJECT_NAME=user.repo_name, APP_PORT=str(free_port()))
    assert check(user.run("id -u", env=env), "id").stdout.strip() != "0"
    check(user.run("python3 -m pip install -q -r requirements-dev.txt", env=env), "pip install")

    up = check(user.run("inv lab.up", env=env, timeout=300), "inv lab.up")
    assert "installing Debian packages" not in up.stdout and "debootstrap" not in up.stdout, up.stdout
    state = json.loads((user.home / ".local/state/djdeploy-lab/state.json").read_text())
    assert (state["packages"], state["images"], state["engine_started"]) == ([], [], False)
    assert (user.home / ".docker/cli-plugins/docker-compose").is_symlink()
    status = check(user.run("inv lab.status", env=env), "inv lab.status").stdout
    assert "image debian:trixie-slim" in status and "image postgres:17-trixie" in status, status

    built = check(user.run("inv build --quiet", env=env), "inv build").stdout
    assert f"{user.repo_name}:" in built
    check(user.run("inv smoke", env=env, timeout=300), "inv smoke")
    ready = check(user.run("inv up --timeout 180", env=env, timeout=400), "inv up").stdout
    assert f"ready: http://127.0.0.1:{env['APP_PORT']}/" in ready
    with direct.open(f"http://127.0.0.1:{env['APP_PORT']}/health/?ready=1", timeout=5) as resp:
        assert resp.status == 200
    check(user.run("inv down --volumes --yes", env=env, timeout=120), "inv down")


def test_a_deploy_dry_run_works_for_that_user(user):
    """The deploy tasks as that user: a dry run against the lab's SSH manager and registry (it connects and
    reads the manager's state, runs nothing), with copies of the lab's key and password in the user's home."""
    from deploy.lab import paths

    ssh = user.home / ".ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    for src, name in ((paths.SSH_KEY, "lab_key"), (paths.KNOWN_HOSTS, "lab_known_hosts"),
                      (paths.REGISTRY_PASSWORD_FILE, "lab_registry_password")):
        (ssh / name).write_bytes(src.read_bytes())
        (ssh / name).chmod(0o600)
    stack = f"djlnr{os.getpid()}"
    (user.repo / "deploy" / "nr.env").write_text(
        f"MANAGER_HOST=127.0.0.1\nSSH_USER=root\nSSH_PORT={paths.SSH_PORT}\nSSH_KEY=~/.ssh/lab_key\n"
        f"KNOWN_HOSTS=~/.ssh/lab_known_hosts\nREGISTRY={paths.REGISTRY}\nREGISTRY_USER={paths.REGISTRY_USER}\n"
        f"REGISTRY_PASSWORD_FILE=~/.ssh/lab_registry_password\nSTACK_NAME={stack}\nREMOTE_DIR=/tmp/{stack}\n"
        "PUBLISH_MODE=host\nENDPOINT_MODE=dnsrr\nDJANGO_ALLOWED_HOSTS=www.example.invalid\n"
        "DJANGO_SECRET_KEY=dry-run-only-secret-key-0123456789-0123456789-0123456789\n"
        "POSTGRES_PASSWORD=not-a-real-password-either\nALLOW_DIRTY=on\n")
    subprocess.run(["chown", "-R", f"{user.name}:{user.name}", str(ssh), str(user.repo / "deploy")], check=True)
    out = check(user.run("inv deploy --env nr --dry-run", env=user.env(), timeout=180),
                "inv deploy --dry-run")
    text = out.stdout + out.stderr
    assert "not-a-real-password" not in text and paths.registry_password() not in text
    assert "docker stack deploy" in text, text[-3000:]
