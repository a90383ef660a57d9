"""djdeploy_django: the contract applied to a settings namespace, the wrapper module, the preflight's contract check,
the health middleware and the forwarded-proto rule (host Django 5.2, in subprocesses where settings are loaded)."""

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from djdeploy_django import contract, preflight  # noqa: E402
from djdeploy_django.env import EnvError  # noqa: E402

KEY = "k" * 40 + "abcdefghij1234567890"
GOOD = {"DJANGO_SECRET_KEY": KEY, "DJANGO_ALLOWED_HOSTS": "localhost,.example.com", "DATABASE_URL": ""}


def test_apply_takes_what_varies_from_the_environment():
    ns = contract.apply({"SECRET_KEY": "django-insecure-x", "DEBUG": True, "ALLOWED_HOSTS": [], "BASE_DIR": "/app",
                         "MIDDLEWARE": ["a.B"], "DATABASES": {"default": {"ENGINE": "sqlite3"}}}, dict(GOOD))
    assert ns["SECRET_KEY"] == KEY and ns["DEBUG"] is False
    assert ns["ALLOWED_HOSTS"] == ["localhost", ".example.com"]
    assert "INSTALLED_APPS" not in ns
    assert ns["DATABASES"] == {} and ns["SESSION_ENGINE"] == "django.contrib.sessions.backends.signed_cookies"
    assert ns["MIDDLEWARE"] == ["djdeploy_django.middleware.AppVersionMiddleware",
                                "djdeploy_django.middleware.HealthMiddleware", "a.B"]
    assert (ns["STATIC_URL"], str(ns["STATIC_ROOT"])) == ("/static/", "/app/staticfiles")
    assert ns["STORAGES"]["staticfiles"]["BACKEND"].endswith("ManifestStaticFilesStorage")
    assert ns["TRUSTED_PROXIES"] == () and ns["SECURE_PROXY_SSL_HEADER"] is None
    assert ns["SESSION_COOKIE_SECURE"] is True and ns["SILENCED_SYSTEM_CHECKS"] == ["security.W008"]
    assert ns["DJDEPLOY_CONTRACT"] == 1


def test_apply_is_idempotent_and_keeps_the_projects_own_choices():
    ns = {"MIDDLEWARE": ["x.Y"], "STORAGES": {"default": {"BACKEND": "storages.S3"}}, "LOGGING": {"version": 1},
          "SESSION_ENGINE": "django.contrib.sessions.backends.cache", "X_FRAME_OPTIONS": "SAMEORIGIN"}
    env = {**GOOD, "DATABASE_URL": "postgres://u:pw@db/n", "DJANGO_TRUSTED_PROXY": "10.0.0.0/8"}
    once = dict(contract.apply(ns, env))
    assert contract.apply(ns, env) == once
    assert ns["MIDDLEWARE"].count("djdeploy_django.middleware.HealthMiddleware") == 1
    assert ns["STORAGES"]["default"] == {"BACKEND": "storages.S3"} and ns["LOGGING"] == {"version": 1}
    assert ns["SESSION_ENGINE"].endswith(".cache") and ns["X_FRAME_OPTIONS"] == "SAMEORIGIN"
    assert ns["DATABASES"]["default"]["OPTIONS"] == {"connect_timeout": "5"}
    assert ns["INSTALLED_APPS"] == ["django.contrib.postgres"]  # once, and only with a database
    assert ns["TRUSTED_PROXIES"] == (ipaddress.ip_network("10.0.0.0/8"),)
    assert ns["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")


def test_apply_fails_on_the_first_bad_variable_without_its_value():
    with pytest.raises(EnvError) as info:
        contract.apply({}, {**GOOD, "DJANGO_SECRET_KEY": "hunter2"})
    assert str(info.value).startswith("DJANGO_SECRET_KEY is too weak") and "hunter2" not in str(info.value)


# --- the preflight's contract check ---------------------------------------------------------------------------
def test_contract_check_passes_when_applied_or_wired_by_hand():
    assert preflight.contract_problems("m", contract.apply({}, dict(GOOD)), GOOD) == []
    wired = {"MIDDLEWARE": list(contract.MIDDLEWARE), "ALLOWED_HOSTS": ["localhost", ".example.com"],
             "TRUSTED_PROXIES": ()}
    assert preflight.contract_problems("m", wired, GOOD) == []


def test_contract_check_names_what_is_missing():
    ns = {"MIDDLEWARE": ["djdeploy_django.middleware.AppVersionMiddleware"], "ALLOWED_HOSTS": ["*"]}
    assert preflight.contract_problems("mysite.settings", ns, GOOD) == [
        "settings module mysite.settings does not apply the djdeploy_django contract (missing: "
        "djdeploy_django.middleware.HealthMiddleware in MIDDLEWARE, ALLOWED_HOSTS from DJANGO_ALLOWED_HOSTS, "
        "TRUSTED_PROXIES from DJANGO_TRUSTED_PROXY); end it with "
        "`from djdeploy_django.contract import apply; apply(globals())`, or set "
        "DJANGO_SETTINGS_MODULE=djdeploy_django.settings and DJDEPLOY_SETTINGS_MODULE=mysite.settings"]


# --- through real processes: the wrapper settings module, the preflight, the middleware ----------------------
def run(code, cwd=REPO / "project", **environ):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "DJDEPLOY_"))}
    base["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, *code], cwd=cwd, env={**base, **environ}, capture_output=True,
                          text=True, timeout=60)


def test_preflight_prints_the_host_regex_and_rejects_own_settings():
    wrapped = {**GOOD, "DJANGO_SETTINGS_MODULE": "djdeploy_django.settings", "DJDEPLOY_SETTINGS_MODULE": "config.settings"}
    r = run(["-m", "djdeploy_django.preflight"], **wrapped)
    assert (r.returncode, r.stdout, r.stderr) == (0, r"(?i)^(localhost|([a-z0-9-]+\.)*example\.com)(:[0-9]{1,5})?$" "\n", "")
    r = run(["-m", "djdeploy_django.preflight"], **{**GOOD, "DJANGO_SETTINGS_MODULE": "config.settings"})
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("error: settings module config.settings does not apply the djdeploy_django contract")


@pytest.mark.parametrize("environ,message", [
    ({"DJANGO_SETTINGS_MODULE": "djdeploy_django.settings"},
     "error: DJDEPLOY_SETTINGS_MODULE is not set; set it to the project's own settings module (e.g. mysite.settings)\n"),
    ({"DJANGO_SETTINGS_MODULE": "djdeploy_django.settings", "DJDEPLOY_SETTINGS_MODULE": "nosuch.settings"},
     "error: DJDEPLOY_SETTINGS_MODULE names nosuch.settings, which cannot be imported; "
     "name the project's settings module (e.g. mysite.settings)\n"),
    ({"DJANGO_SETTINGS_MODULE": "nosuch.settings"},
     "error: DJANGO_SETTINGS_MODULE names nosuch.settings, which cannot be imported; "
     "set it to djdeploy_django.settings\n"),
    ({}, "error: DJANGO_SETTINGS_MODULE is not set; set it to djdeploy_django.settings\n"),
])
def test_preflight_settings_module_errors_are_one_line(environ, message):
    r = run(["-m", "djdeploy_django.preflight"], **GOOD, **environ)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", message)


CLIENT = """
import django
django.setup()
from django.test import Client
c = Client()
for path, extra in [("/health/", {}), ("/health/?ready=1", {}), ("/nope/", {})]:
    r = c.get(path, HTTP_HOST="localhost")
    print(path, r.status_code, r.content[:2] if r.status_code == 200 else b'', r.get("X-App-Version"))
print("post", Client().post("/health/", HTTP_HOST="localhost").status_code)
"""


def test_health_middleware_answers_before_the_urls_with_the_version():
    wrapped = {**GOOD, "DJANGO_SETTINGS_MODULE": "djdeploy_django.settings", "DJDEPLOY_SETTINGS_MODULE": "config.settings",
               "APP_VERSION": "abc1234"}
    r = run(["-c", CLIENT], **wrapped)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["/health/ 200 b'ok' abc1234", "/health/?ready=1 200 b'ok' abc1234",
                                     "/nope/ 404 b'' abc1234", "post 405"]


WSGI = """
import io
from djdeploy_django import wsgi
seen = {}
wsgi.project_application = lambda environ, start: seen.update(environ) or []
def call(addr, trusted):
    seen.clear()
    wsgi.TRUSTED = trusted
    wsgi.application({"REMOTE_ADDR": addr, "HTTP_X_FORWARDED_PROTO": "https", "wsgi.url_scheme": "https"}, None)
    return seen.get("HTTP_X_FORWARDED_PROTO"), seen["wsgi.url_scheme"]
import ipaddress
print(call("10.1.2.3", ()), call("10.1.2.3", (ipaddress.ip_network("10.0.0.0/8"),)), call("bad", ()))
"""


def test_forwarded_proto_is_trusted_only_from_the_proxy():
    wrapped = {**GOOD, "DJANGO_SETTINGS_MODULE": "djdeploy_django.settings", "DJDEPLOY_SETTINGS_MODULE": "config.settings"}
    r = run(["-c", WSGI], **wrapped)
    assert r.stdout == "(None, 'http') ('https', 'https') (None, 'http')\n", r.stderr
