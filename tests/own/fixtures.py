"""The session's installed toolkit and Wagtail site, shared by tests/own and the uploads cluster test: registered
once, in tests/conftest.py (a fixture imported by two conftest modules would run twice)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.own.conftest import ROOT, OwnProject, cleanup, prepare_wagtail, remove_leftovers


@pytest.fixture(scope="session")
def toolkit_venv(tmp_path_factory, docker_client):
    """A fresh virtualenv with this repository installed by pip (its dependencies from the host's site-packages)."""
    remove_leftovers(docker_client)
    venv = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    out = subprocess.run([str(venv / "bin" / "pip"), "install", "--no-deps", "--quiet", str(ROOT)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import deploy, djdeploy_django; print(deploy.__file__)"],
                           cwd=tmp_path_factory.getbasetemp(), capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(venv)), where  # the installed copy, not this checkout
    return venv


@pytest.fixture(scope="session")
def wagtail_site(toolkit_venv, tmp_path_factory, docker_client):
    """A Wagtail site from `wagtail start` (not yet prepared), shared by tests/own's Wagtail modules. Its image
    carries the S3 extra (IMAGE_EXTRAS=s3: django-storages, boto3), so one build serves the local and lab tests."""
    path = tmp_path_factory.mktemp("wagtail")
    subprocess.run([str(toolkit_venv / "bin" / "python"), "-m", "wagtail.bin.wagtail", "start", "mysite", str(path)],
                   check=True, timeout=120, capture_output=True)
    p = OwnProject(toolkit_venv, path, "wagtail")
    p.env["IMAGE_EXTRAS"] = "s3"
    yield p
    cleanup(p, docker_client)


@pytest.fixture(scope="session")
def wagtail_built(wagtail_site, tmp_path_factory):
    """The Wagtail site prepared and built once (`inv build`) for the session."""
    prepare_wagtail(wagtail_site, tmp_path_factory.mktemp("wagtail-aside"))
    wagtail_site.inv("build", "--quiet")
    return wagtail_site
