"""A developer's laptop with internet, simulated (issue 14): a nested Docker engine whose Docker Hub is a registry
mirror pre-loaded with the images under their official names, and a NON-ROOT user (no root, so no apt and no
debootstrap) running the README's first command against it (DOCKER_HOST):

- every image is pulled, none is built (no stand-in, no base), and the app answers at its URL;
- images under the Postgres and the base names that the lab did not build survive `inv lab.up` and
  `inv lab.down` with the same image ID.

The user's commands run in the nested machine's network namespace (nsenter -n), where 127.0.0.1:8000 is the
app's published port, as Docker Desktop forwards published ports to the Mac's localhost. About 2-3 minutes
cold (the app image is built in the nested engine: apt and pip inside the build).
"""

from __future__ import annotations

import json
import os

import pytest

from laptop import FIRST_COMMAND, LaptopUser, NestedLaptop, user_name

pytestmark = pytest.mark.lab
HEALTH = ("python3 -c \"import urllib.request as u; "
          "print(u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:8000/health/?ready=1', timeout=5).read()"
          ".decode())\"")


@pytest.fixture(scope="module")
def machine(docker_client, tmp_path_factory):
    """The nested laptop and its user; everything removed at the end (user, engine, volume, mirror, network)."""
    laptop = NestedLaptop(docker_client, f"djdeploy-test-laptop{os.getpid()}", tmp_path_factory.mktemp("laptop"))
    user = None
    try:
        laptop.start()
        user = LaptopUser(user_name("lap"), docker_group=False)  # reaches the nested engine over its TCP port
        user.make_checkout()
        user.make_venv()
        user.env_laptop = user.env(DOCKER_HOST=laptop.DOCKER_HOST)
        yield laptop, user
    finally:
        if user is not None:
            user.remove()
        laptop.stop()


def run(machine, script, timeout=900):
    laptop, user = machine
    out = user.run(script, env=user.env_laptop, netns_pid=laptop.netns_pid, timeout=timeout)
    print(f"$ {script}   ({out.seconds:.1f}s, exit {out.returncode})\n{out.stdout[-4000:]}\n{out.stderr[-2000:]}")
    return out


def test_the_first_command_pulls_every_image_builds_none_and_the_app_answers(machine):
    laptop, user = machine
    assert run(machine, "id -u").stdout.strip() != "0"
    first = run(machine, FIRST_COMMAND)
    assert first.returncode == 0
    text = first.stdout + first.stderr
    assert "pulled debian:trixie-slim" in text and "pulled postgres:17-trixie" in text
    assert "building stand-in" not in text and "debootstrap" not in text and "installing Debian packages" not in text
    state = json.loads((user.home / ".local/state/djdeploy-lab/state.json").read_text())
    assert (state["images"], state["packages"], state["engine_started"]) == ([], [], False)
    assert sorted(state["pulled"]) == ["debian:trixie-slim", "postgres:17-trixie"]
    images = laptop.images()
    assert images["debian:trixie-slim"][1] == "" and images["postgres:17-trixie"][1] == ""  # official, not the lab's
    assert not [ref for ref, (_, label) in images.items() if label]                       # nothing lab-built at all
    assert run(machine, HEALTH).stdout.strip() == "ok"
    status = run(machine, "inv lab.status").stdout
    assert "image debian:trixie-slim" in status and "official (pulled by the lab)" in status
    print(f"README first command on the laptop, cold: {first.seconds:.1f}s")

    assert run(machine, "inv down").returncode == 0
    warm = run(machine, FIRST_COMMAND)
    assert warm.returncode == 0 and "pulling" not in warm.stdout and "building" not in warm.stdout
    assert run(machine, HEALTH).stdout.strip() == "ok"
    print(f"README first command on the laptop, warm: {warm.seconds:.1f}s")


def test_images_the_lab_did_not_build_survive_lab_up_and_lab_down(machine):
    laptop, user = machine
    assert run(machine, "inv down --volumes --yes").returncode == 0
    for name in ("postgres:17-trixie", "debian:trixie-slim"):  # the user's own images under the two names
        built = own_build(laptop, name)
        assert built.returncode == 0, built.stderr
    before = {n: laptop.images()[n] for n in ("postgres:17-trixie", "debian:trixie-slim")}
    assert all(label == "" for _, label in before.values())

    up = run(machine, "inv lab.up")
    assert up.returncode == 0 and "pulling" not in up.stdout and "building" not in up.stdout
    assert {n: laptop.images()[n] for n in before} == before
    down = run(machine, "inv lab.down --yes")
    assert down.returncode == 0
    assert {n: laptop.images()[n] for n in before} == before
    assert not (user.home / ".local/state/djdeploy-lab").exists()


def own_build(laptop, name):
    """A new image under ``name`` (FROM the current one, one label more): the user's own, not the lab's."""
    import subprocess

    dockerfile = f"FROM {name}\nLABEL mine=yes\n"
    return subprocess.run(["docker", "exec", "-i", laptop.container.id, "docker", "build", "-q", "-t", name, "-"],
                          input=dockerfile, capture_output=True, text=True, timeout=300)
