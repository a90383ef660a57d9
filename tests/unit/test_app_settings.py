"""App settings and app secrets per environment (APP_ENV_<NAME>, APP_SECRET_<NAME>[_FILE]) and an external
Postgres (DATABASE=external, DATABASE_URL): every config error verbatim, the stack file carries secret NAMES
never values, the migration gets both, a real (fake-manager) deploy never prints a value, rotation = new name."""

import io
import json

import pytest

from deploy.core.errors import ConfigError
from deploy.ship import config, plan, report, stackfile, swarm
from shipfakes import FakeManager, FakeRegistry, builder, offline, remote  # noqa: F401 (offline: a fixture)

SMTP = "smtp-password-0123456789"
DSN = "https://key@sentry.example.com/1"


def load(tmp_path, extra="", environ=None):
    from shipfakes import write_env

    write_env(tmp_path, extra)
    return config.load("lab", env_dir=tmp_path, environ=environ or {})


def problems(tmp_path, extra="", environ=None):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, extra, environ)
    return err.value.problems


def line_of(tmp_path, key):
    text = (tmp_path / "lab.env").read_text().splitlines()
    return next(n for n, line in enumerate(text, 1) if line.startswith(key + "="))


@pytest.fixture
def cfg(tmp_path):
    (tmp_path / "smtp").write_text(SMTP + "\n")
    return load(tmp_path, f"APP_ENV_SENTRY_ENVIRONMENT=lab\nAPP_SECRET_SENTRY_DSN={DSN}\n"
                          "APP_SECRET_EMAIL_HOST_PASSWORD_FILE=smtp\n")


def test_app_variables_and_secrets_are_read_from_the_file(cfg):
    assert cfg.app_env == (("SENTRY_ENVIRONMENT", "lab"),)
    assert cfg.app_secrets == (("EMAIL_HOST_PASSWORD", SMTP), ("SENTRY_DSN", DSN))
    assert SMTP in cfg.secrets and DSN in cfg.secrets and "lab" not in cfg.secrets
    assert SMTP not in repr(cfg)


def test_the_environment_overrides_the_file_with_the_djdeploy_prefix(tmp_path):
    (tmp_path / "other").write_text("from-a-file")
    cfg = load(tmp_path, "APP_ENV_FEATURE=off\nAPP_SECRET_TOKEN=in-file\n",
               environ={"DJDEPLOY_APP_ENV_FEATURE": "on", "DJDEPLOY_APP_SECRET_TOKEN_FILE": str(tmp_path / "other"),
                        "DJDEPLOY_APP_ENV_EXTRA": "x"})
    assert cfg.app_env == (("EXTRA", "x"), ("FEATURE", "on"))
    assert cfg.app_secrets == (("TOKEN", "from-a-file"),)


def test_invalid_app_variable_name_is_one_line_naming_key_and_file(tmp_path):
    got = problems(tmp_path, "APP_ENV_sentry-dsn=x\n")
    assert got == [f"{tmp_path}/lab.env:{line_of(tmp_path, 'APP_ENV_sentry-dsn')}: invalid app variable name "
                   "APP_ENV_sentry-dsn: after APP_ENV_ use upper-case letters, digits and '_', starting with a letter "
                   "(e.g. APP_ENV_SENTRY_DSN)"]


def test_invalid_app_secret_name_from_the_environment(tmp_path):
    assert problems(tmp_path, environ={"DJDEPLOY_APP_SECRET_1KEY": "v"}) == [
        "environment DJDEPLOY_APP_SECRET_1KEY: invalid app variable name APP_SECRET_1KEY: after APP_SECRET_ use "
        "upper-case letters, digits and '_', starting with a letter (e.g. APP_SECRET_SENTRY_DSN)"]


def test_missing_secret_file_is_one_line(tmp_path):
    got = problems(tmp_path, "APP_SECRET_SMTP_FILE=nowhere/smtp\n")
    assert got == [f"{tmp_path}/lab.env:{line_of(tmp_path, 'APP_SECRET_SMTP_FILE')}: cannot read "
                   f"{tmp_path}/nowhere/smtp (No such file or directory)"]


def test_missing_secret_file_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert problems(tmp_path, environ={"DJDEPLOY_APP_SECRET_SMTP_FILE": "gone"}) == [
        f"environment DJDEPLOY_APP_SECRET_SMTP_FILE: cannot read {tmp_path}/gone (No such file or directory)"]


def test_names_the_toolkit_sets_are_refused(tmp_path):
    got = problems(tmp_path, "APP_ENV_DATABASE_URL=postgres://x\nAPP_SECRET_DJANGO_SECRET_KEY=y\n")
    assert got == [
        f"{tmp_path}/lab.env:{line_of(tmp_path, 'APP_ENV_DATABASE_URL')}: APP_ENV_DATABASE_URL would set "
        "DATABASE_URL, which the toolkit sets itself; use the deploy key instead (see deploy/prod.env.example)",
        f"{tmp_path}/lab.env:{line_of(tmp_path, 'APP_SECRET_DJANGO_SECRET_KEY')}: APP_SECRET_DJANGO_SECRET_KEY would "
        "set DJANGO_SECRET_KEY, which the toolkit sets itself; use the deploy key instead (see deploy/prod.env.example)"]


def test_empty_secret_both_forms_clash_and_multi_line_values_are_refused(tmp_path):
    (tmp_path / "pem").write_text("line one\nline two\n")
    got = problems(tmp_path, "APP_SECRET_EMPTY=\nAPP_SECRET_TWICE=a\nAPP_SECRET_TWICE_FILE=pem\n"
                             "APP_SECRET_TOKEN=t\nAPP_ENV_TOKEN_FILE=/x\nAPP_SECRET_PEM_FILE=pem\n")
    f = f"{tmp_path}/lab.env"
    assert got == [
        f"{f}:{line_of(tmp_path, 'APP_SECRET_TWICE_FILE')}: set APP_SECRET_TWICE or APP_SECRET_TWICE_FILE, not both",
        f"{f}:{line_of(tmp_path, 'APP_SECRET_EMPTY')}: APP_SECRET_EMPTY is empty; an app secret needs a value "
        "(or APP_SECRET_EMPTY_FILE=path)",
        f"{f}:{line_of(tmp_path, 'APP_SECRET_PEM_FILE')}: APP_SECRET_PEM holds several lines; the migration's env file "
        "cannot carry that (one line, e.g. base64)",
        f"{f}:{line_of(tmp_path, 'APP_ENV_TOKEN_FILE')}: APP_ENV_TOKEN_FILE clashes with APP_SECRET_TOKEN (its file is "
        "TOKEN_FILE); set one of them"]


def test_an_app_secret_whose_docker_name_is_too_long(tmp_path):
    got = problems(tmp_path, "STACK_NAME=" + "s" * 40 + "\nAPP_SECRET_VERY_LONG_NAME=v\n")
    assert got == [f"{tmp_path}/lab.env:{line_of(tmp_path, 'APP_SECRET_VERY_LONG_NAME')}: APP_SECRET_VERY_LONG_NAME "
                   "makes a Docker secret name of 70 characters (at most 64); use a shorter name or STACK_NAME"]


def test_stack_file_carries_secret_names_and_file_paths_never_values(cfg):
    spec = stackfile.stack_spec(cfg, "img@sha256:x", "v2", "T", "proxy_cfg")
    text = stackfile.render(spec)
    assert SMTP not in text and DSN not in text
    app = spec["services"]["app"]
    assert app["environment"]["SENTRY_ENVIRONMENT"] == "lab"
    assert app["environment"]["EMAIL_HOST_PASSWORD_FILE"] == "/run/secrets/app_email_host_password"
    assert app["environment"]["SENTRY_DSN_FILE"] == "/run/secrets/app_sentry_dsn"
    assert {"source": "app_sentry_dsn", "target": "app_sentry_dsn"} in app["secrets"]
    names = stackfile.secret_names(cfg)
    assert spec["secrets"]["app_sentry_dsn"] == {"external": True, "name": names["app_sentry_dsn"]}
    assert names["app_sentry_dsn"].startswith("djt_app_sentry_dsn_") and len(names["app_sentry_dsn"]) == 29


def test_rotating_an_app_secret_gives_it_a_new_name_and_leaves_the_others(tmp_path, cfg):
    (tmp_path / "smtp").write_text("rotated-password\n")
    rotated = config.load("lab", env_dir=tmp_path, environ={})
    old, new = stackfile.secret_names(cfg), stackfile.secret_names(rotated)
    assert [k for k in old if old[k] != new[k]] == ["app_email_host_password"]


def test_the_migration_gets_the_variables_and_the_secrets_as_values(cfg):
    lines = swarm.migrate_env(cfg).splitlines()
    assert "SENTRY_ENVIRONMENT=lab" in lines and f"EMAIL_HOST_PASSWORD={SMTP}" in lines and f"SENTRY_DSN={DSN}" in lines


def test_a_deploy_creates_each_app_secret_on_stdin_and_prints_no_value(cfg, offline, monkeypatch):
    FakeRegistry(monkeypatch)
    manager, out = FakeManager(), io.StringIO()
    from deploy.ship import executor

    executor.deploy(cfg, tag="v2", out=out, remote=remote(cfg, manager, out), builder=builder([]))
    name = stackfile.secret_names(cfg)["app_email_host_password"]
    assert manager.stdin_of("secret create")
    assert [s for c, s in manager.calls if c.endswith(f" {name} -")] == [SMTP]
    printed = out.getvalue() + "\n".join(manager.commands())
    stack = manager.files[f"{swarm.paths(cfg).stack}"].decode()
    for value in (SMTP, DSN):
        assert value not in printed and value not in stack
    assert name in printed and json.loads(stack)["services"]["app"]["environment"]["SENTRY_ENVIRONMENT"] == "lab"


def test_plan_text_redacts_app_secrets(cfg):
    the_plan = plan.build_deploy_plan(cfg, plan.Release("deploy", "v2", True, True, False, "me\n", "T"),
                                      plan.EnvState(), "global\n")
    text = report.plan_text(the_plan) + repr(the_plan.steps)
    assert SMTP not in text and DSN not in text
    assert SMTP in [s.stdin for s in the_plan.steps if isinstance(s.stdin, str)]


def test_a_dollar_in_an_app_variable_is_escaped_for_stack_deploy_but_not_for_the_migration(tmp_path):
    cfg = load(tmp_path, "APP_ENV_PRICE='costs $5 or ${X}'\n")
    spec = stackfile.stack_spec(cfg, "img", "v2", "T", "p")
    assert spec["services"]["app"]["environment"]["PRICE"] == "costs $$5 or $${X}"
    assert "PRICE=costs $5 or ${X}" in swarm.migrate_env(cfg).splitlines()


def test_a_multi_line_app_variable_is_refused(tmp_path):
    got = problems(tmp_path, 'APP_ENV_MOTD="line one\nline two"\n')
    assert got == [f"{tmp_path}/lab.env:{line_of(tmp_path, 'APP_ENV_MOTD')}: APP_ENV_MOTD holds several lines; the "
                   "migration's env file cannot carry that (one line, e.g. base64)"]
