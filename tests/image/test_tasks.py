"""`inv build` and `inv smoke` as a user runs them (subprocess), against the real engine."""

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import LABEL

pytestmark = pytest.mark.engine
ROOT = Path(__file__).resolve().parents[2]


def inv(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def smoke_leftovers(docker_client):
    return docker_client.containers.list(all=True, filters={"label": "djdeploy.smoke"})


def test_inv_build_streams_and_reports_tag_size_time(built_image):
    r = inv("build")
    assert r.returncode == 0, r.stderr
    assert "Step 1/" in r.stdout and "Successfully tagged" in r.stdout
    last = r.stdout.strip().splitlines()[-1]
    # the tag is the git SHA at the time of the call (other commits may land during a session)
    repo = built_image.ref.split(":")[0]
    assert re.fullmatch(rf"built {repo}:[0-9a-f]{{7}}(-dirty)? \(also :latest\)  size \d+\.\d MB  in \d+\.\ds", last), last


def test_inv_smoke_passes_on_the_built_image(docker_client, built_image):
    r = inv("smoke", "--image", built_image.ref)
    assert r.returncode == 0, r.stdout + r.stderr
    for check in ("uwsgi booted", "first answer after", "page answers", "foreign host rejected",
                  "hashed static files", "health endpoint", "clean stop in"):
        assert f"ok   {check}" in r.stdout
    assert smoke_leftovers(docker_client) == []


def test_inv_smoke_names_the_failing_check_and_cleans_up(docker_client, built_image):
    """A derived image whose Host rule never fires: Django answers the foreign Host (400 with a body)."""
    dockerfile = f"FROM {built_image.ref}\nENV UWSGI_ROUTE_IF_NOT=\"regexp:${{HTTP_HOST}};.* break:400\"\n"
    image, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag="djapp-smoke-broken:test",
                                          labels=LABEL, rm=True)
    try:
        r = inv("smoke", "--image", "djapp-smoke-broken:test")
        assert r.returncode == 1
        assert r.stderr.strip().splitlines()[-1].startswith(
            "error: smoke check 'foreign host rejected' failed: Host: evil.example.com gave 400 with ")
        assert smoke_leftovers(docker_client) == []
    finally:
        docker_client.images.remove(image.id, force=True)


def test_inv_smoke_unknown_image_is_one_line():
    r = inv("smoke", "--image", "djapp:does-not-exist")
    assert r.returncode == 1
    assert r.stderr.strip() == "error: image djapp:does-not-exist not found; build it with `inv build` or pass --image"
