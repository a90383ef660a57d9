"""`inv lab.up`, `inv build`, `inv smoke`, `inv up` and a deploy dry run as a NON-ROOT user in the docker group
(issue 14): a real account (useradd), its own checkout and virtualenv, the CLI run with runuser. Nothing it needs
lives under /root; its lab state, image cache and compose plugin are under its own home."""

from __future__ import annotations

import json
import os
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
    (user.repo / "deploy" / "nr.env").write_text(
        "MANAGER_HOST=swarm.example.invalid\nSSH_USER=deploy\nSSH_KEY=~/.ssh/id_ed25519\n"
        "KNOWN_HOSTS=~/.ssh/known_hosts\nREGISTRY=registry.example.invalid\nREGISTRY_USER=ci\n"
        "REGISTRY_PASSWORD=not-a-real-password\nAPP_IMAGE=djapp\nSTACK_NAME=djapp\n"
        "DJANGO_ALLOWED_HOSTS=www.example.invalid\n"
        "DJANGO_SECRET_KEY=dry-run-only-secret-key-0123456789-0123456789-0123456789\n"
        "POSTGRES_PASSWORD=not-a-real-password-either\n")
    os.chown(user.repo / "deploy" / "nr.env", *(lambda st: (st.st_uid, st.st_gid))(os.stat(user.repo)))
    check(user.run("install -d -m 0700 ~/.ssh && ssh-keygen -q -t ed25519 -N '' -f ~/.ssh/id_ed25519 && "
                   "echo \"swarm.example.invalid $(cut -d' ' -f1,2 ~/.ssh/id_ed25519.pub)\" > ~/.ssh/known_hosts"),
          "ssh-keygen")
    out = check(user.run("inv deploy --env nr --dry-run --image abc1234", env=user.env(), timeout=120),
                "inv deploy --dry-run")
    assert "not-a-real-password" not in out.stdout + out.stderr
    assert "docker stack deploy" in out.stdout + out.stderr
