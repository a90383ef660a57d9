"""The local stack (`inv up`) gets the app's own variable and secret under the deploy environments' names
(APP_ENV_*/APP_SECRET_*), the secret as a file (<NAME>_FILE), and neither `inv up` nor `docker compose config`
prints the secret. A private compose project (labelled like the stack tests, removed at the end)."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
import sys

import pytest

from tests.uploads.conftest import ROOT, free_port

pytestmark = [pytest.mark.engine]
FILES = "docker-compose.yml:tests/stack/compose.labels.yml"
SEEN = ("import hashlib, os; from djdeploy_django import env; "
        "print(os.environ.get('UPLOADS_CHECK', '-'), os.environ.get('UPLOADS_TOKEN_FILE', '-'), "
        "hashlib.sha256(env.secret('UPLOADS_TOKEN').encode()).hexdigest())")


@pytest.fixture
def stack():
    project = "djupl" + secrets.token_hex(3)
    token, variable = "tok-" + secrets.token_urlsafe(24), "var-" + secrets.token_hex(6)
    env = {**os.environ, "COMPOSE_PROJECT_NAME": project, "APP_PORT": str(free_port()), "COMPOSE_FILE": FILES,
           "POSTGRES_PASSWORD": secrets.token_urlsafe(16), "DJDEPLOY_TEST_OWNER": str(os.getpid()),
           "APP_ENV_UPLOADS_CHECK": variable, "APP_SECRET_UPLOADS_TOKEN": token}
    env.pop("APP_IMAGE_REF", None)

    def inv(*args, timeout=900):
        return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env, text=True,
                              capture_output=True, timeout=timeout, input="")

    try:
        yield project, token, variable, inv
    finally:
        out = inv("down", "--volumes", "--yes", timeout=300)
        print(out.stdout[-2000:], out.stderr[-2000:])
        shutil.rmtree(ROOT / ".djdeploy" / project, ignore_errors=True)


def test_inv_up_passes_the_apps_variable_and_secret_file_and_prints_no_secret(stack):
    project, token, variable, inv = stack
    out = inv("up", "--timeout", "180")
    printed = out.stdout + out.stderr
    assert out.returncode == 0, printed[-4000:]
    assert token not in printed
    override = ROOT / ".djdeploy" / project / "compose.app.yml"
    assert token not in override.read_text()
    compose = ["docker", "compose", "--project-directory", str(ROOT), "--project-name", project]
    for name in FILES.split(":") + [str(override.relative_to(ROOT))]:
        compose += ["--file", str(ROOT / name)]
    env = {**os.environ, "APP_ENV_UPLOADS_CHECK": variable, "APP_SECRET_UPLOADS_TOKEN": token}
    config = subprocess.run(compose + ["config"], cwd=ROOT, env=env, text=True, capture_output=True, timeout=60)
    assert config.returncode == 0 and token not in config.stdout and variable in config.stdout
    seen = subprocess.run(compose + ["exec", "-T", "app", "python", "-c", SEEN], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=60)
    assert seen.stdout.strip() == (f"{variable} /run/secrets/app_uploads_token "
                                   f"{hashlib.sha256(token.encode()).hexdigest()}"), seen.stderr
