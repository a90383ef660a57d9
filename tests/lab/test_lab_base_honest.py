"""The Debian base stand-in, built for real (debootstrap) in an isolated lab under a lab-only name: it is named
for what it holds (read from its /etc/debian_version), says so in its labels and in `inv lab.status`, and
`inv lab.down` removes it (the lab built it). About a minute of debootstrap."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labhelpers import run_inv
from deploy.lab import baseimage, imagesource, paths

pytestmark = pytest.mark.lab


def test_the_base_stand_in_is_named_for_what_it_holds(isolated_lab_env, docker_client):
    name = f"djdeploy-test-base{os.getpid()}/debian:trixie-slim"  # lab-only namespace: never pulled
    env = {**isolated_lab_env, "DJDEPLOY_LAB_BASE_IMAGES": name}
    try:
        up = run_inv("lab.up", env=env, timeout=900)
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"{name}: a lab-only name (never pulled); building it" in up.stdout
        image = docker_client.images.get(name)
        held = docker_client.containers.run(name, ["cat", "/etc/debian_version"], remove=True).decode().strip()
        assert baseimage.honest(name, held) and held.startswith("13.")
        assert image.labels[imagesource.VERSION_LABEL] == f"Debian {held}"
        assert image.labels[paths.LABEL] == env["DJDEPLOY_LAB_DIR"]
        assert f"the rootfs holds Debian {held}: importing it as {name}" in up.stdout
        status = run_inv("lab.status", env=env, timeout=60).stdout
        assert f"stand-in built by the lab from debootstrap --variant=minbase trixie ({baseimage.MIRROR}): " \
               f"Debian {held}" in status, status
        down = run_inv("lab.down", "--yes", env=env, timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not docker_client.images.list(name=name.split(":")[0])
        assert not Path(env["DJDEPLOY_LAB_DIR"]).exists()
    finally:
        for image in docker_client.images.list(name=name.split(":")[0]):
            docker_client.images.remove(image.id, force=True)
