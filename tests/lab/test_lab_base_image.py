"""The Debian base image: slim as the official slim images, and it stays slim after a later apt-get install."""

from __future__ import annotations

import pytest

from labhelpers import TEST_LABEL
from deploy.lab import baseimage, paths, provision

pytestmark = pytest.mark.engine

BASE = provision.base_images()[0]
MB = 1000 * 1000


def _run(docker_client, script: str) -> str:
    container = docker_client.containers.create(BASE, ["sh", "-euc", script], labels=TEST_LABEL)
    try:
        container.start()
        code = container.wait(timeout=300)["StatusCode"]
        logs = container.logs(stderr=False).decode(errors="replace")
        assert code == 0, f"exit {code}:\n" + container.logs().decode(errors="replace")
        return logs
    finally:
        container.remove(force=True)


def test_base_image_is_the_labs_build_and_small(docker_client):
    image = docker_client.images.get(BASE)
    print(f"{BASE}: {image.attrs['Size'] / MB:.1f} MB")
    if not (image.labels or {}).get(paths.LABEL):
        pytest.skip(f"{BASE} is not the lab's build here (pulled, or the user's own): nothing of the lab to check")
    assert image.labels.get(paths.HASH_LABEL) == baseimage.recipe_hash(baseimage.suite_for(BASE))
    assert image.attrs["Size"] <= 100 * MB, f"{BASE} is {image.attrs['Size'] / MB:.1f} MB (target <= 100 MB)"


def test_base_image_holds_the_release_its_name_says(docker_client):
    held = _run(docker_client, "cat /etc/debian_version").strip()
    assert baseimage.honest(BASE, held), f"{BASE} holds Debian {held}"


def test_base_image_has_no_apt_caches_lists_or_docs(docker_client):
    out = _run(docker_client, """
        find /var/cache/apt -name '*.deb' -o -name '*.bin' | sed 's/^/cache: /'
        find /var/lib/apt/lists -type f | sed 's/^/list: /'
        find /usr/share/doc /usr/share/man /usr/share/info /usr/share/locale -mindepth 1 | sed 's/^/doc: /'
        . /etc/os-release; echo "version: $VERSION_CODENAME"
    """)
    assert out.strip() == "version: trixie", out


def test_later_apt_install_stays_slim(docker_client):
    out = _run(docker_client, """
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends less >/dev/null
        less --version | head -1
        find /var/cache/apt -name '*.deb' -o -name '*.bin' | sed 's/^/cache: /'
        find /usr/share/doc /usr/share/man -mindepth 1 | sed 's/^/doc: /'
        excluded=$(dpkg -L less | grep -E '^/usr/share/(doc|man)/.+[.]gz$')
        for f in $excluded; do [ ! -e "$f" ] || echo "doc: $f"; done
        echo "excluded: $(echo "$excluded" | grep -c .)"
    """)
    lines = out.strip().splitlines()
    assert lines[0].startswith("less "), out
    assert not any(line.startswith(("cache: ", "doc: ")) for line in lines), out
    assert int(lines[-1].split()[1]) > 0, out  # the package has docs and man pages; dpkg did not unpack them
