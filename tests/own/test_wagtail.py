"""A Wagtail site from `wagtail start` (Wagtail 8.0.1 from PyPI), the same steps as the startproject test: init (which
keeps the site's own Dockerfile and says it is not the toolkit's; moved away as it says, init writes its own), then
`inv build`, `inv smoke` and `inv up`: the Wagtail home page and admin login serve, a foreign Host gets 400.
The site and its build are the session's (tests/own/fixtures.py), shared with the lab and cluster tests."""

from __future__ import annotations

import shutil

import pytest

from tests.own.conftest import git_commit
from tests.own.test_startproject import get

pytestmark = pytest.mark.engine
STATE: dict = {}


@pytest.fixture(scope="module")
def site(wagtail_site):
    yield wagtail_site
    wagtail_site.inv("down", "--volumes", "--yes", check=False, timeout=180)   # the local stack; the image stays


@pytest.fixture(autouse=True)
def logs_on_failure(request, site):
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"--- compose logs of {site.compose_project} ---\n{site.logs()}")


def test_init_keeps_the_sites_own_dockerfile_until_it_is_moved_away(site, tmp_path):
    djdeploy = str(site.venv / "bin" / "djdeploy")
    out = site.run(djdeploy, "init", str(site.path)).stdout
    assert out.splitlines()[0].endswith("Django project mysite (settings mysite.settings.production, WSGI "
                                        "mysite.wsgi.application, manage.py in ., requirements from requirements.txt)")
    assert ("skipped  Dockerfile (exists; never overwritten) but it is not the toolkit's: move it away and rerun "
            "init to get the toolkit's") in out
    assert "python:3" in (site.path / "Dockerfile").read_text()  # wagtail's own, untouched
    for name in ("Dockerfile", ".dockerignore"):  # the user's decision, as init says
        shutil.move(site.path / name, tmp_path / name)
    out = site.run(djdeploy, "init", str(site.path)).stdout
    assert "wrote    Dockerfile" in out and "wrote    .dockerignore" in out and "wrote    tasks.py" not in out
    assert "\nSMOKE_PATH=/django-admin/login/\n" in (site.path / ".env.example").read_text()
    git_commit(site.path)
    STATE["ready"] = True


def test_build_smoke_and_up_serve_the_site(site, wagtail_built):
    assert STATE.get("ready"), "init failed"   # wagtail_built: `inv build --quiet` succeeded
    smoke = site.inv("smoke").stdout
    assert "ok   page answers" in smoke and "ok   hashed static files (200, expires a year ahead)" in smoke, smoke
    site.inv("up", "--timeout", "180")
    status, _, body = get(site.port, "/")
    assert status == 200 and b"Wagtail" in body, (status, body[:300])   # the home page the migrations created
    status, _, body = get(site.port, "/admin/login/")
    assert status == 200 and b"wagtail" in body.lower(), (status, body[:300])
    assert get(site.port, "/", host="evil.example.com")[::2] == (400, b"")
    assert get(site.port, "/health/?ready=1")[::2] == (200, b"ok")
