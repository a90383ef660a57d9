"""Settings parsing (djdeploy_django/env.py) and the settings module as manage.py loads it, on the host's Python."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROJECT = REPO / "project"
sys.path.insert(0, str(REPO))

from djdeploy_django import env  # noqa: E402
from djdeploy_django.env import EnvError  # noqa: E402
from djdeploy_django.preflight import classify, wait_for_db  # noqa: E402

KEY = "k" * 40 + "abcdefghij1234567890"
GOOD = {"DJANGO_SECRET_KEY": KEY, "DJANGO_ALLOWED_HOSTS": "localhost", "DATABASE_URL": ""}


def err(fn, *args, **kw):
    with pytest.raises(EnvError) as info:
        fn(*args, **kw)
    return str(info.value)


# --- secrets and _FILE ---------------------------------------------------------------------------------------
def test_secret_from_variable():
    assert env.secret("X", {"X": "v"}) == "v"


def test_secret_from_file(tmp_path):
    f = tmp_path / "s"
    f.write_text("from-file\n")
    assert env.secret("X", {"X_FILE": str(f)}) == "from-file"


def test_secret_both_set_is_an_error(tmp_path):
    assert err(env.secret, "X", {"X": "a", "X_FILE": "/x"}) == "X and X_FILE are both set; set only one of them"


def test_secret_missing():
    assert err(env.secret, "X", {}) == "X is not set; set it (or X_FILE) in the environment"


def test_secret_unreadable_file():
    msg = err(env.secret, "X", {"X_FILE": "/nonexistent/secret"})
    assert msg == "X_FILE names a file that cannot be read (No such file or directory); mount the secret file"


def test_secret_key_too_weak_never_prints_value():
    msg = err(env.secret_key, {"DJANGO_SECRET_KEY": "hunter2-short"})
    assert msg.startswith("DJANGO_SECRET_KEY is too weak (at least 50 characters, 5 distinct); generate one with:")
    assert "hunter2" not in msg


def test_secret_key_insecure_prefix_refused():
    assert "too weak" in err(env.secret_key, {"DJANGO_SECRET_KEY": "django-insecure-" + "x1y2z3" * 10})


# --- booleans and integers -----------------------------------------------------------------------------------
@pytest.mark.parametrize("raw,value", [("on", True), ("TRUE", True), ("1", True), ("off", False), ("no", False),
                                       ("", False)])
def test_boolean(raw, value):
    assert env.boolean("B", None, {"B": raw}) is value


def test_boolean_default_and_invalid():
    assert env.boolean("B", True, {}) is True
    assert err(env.boolean, "B", False, {"B": "maybe"}) == "B must be on/off (or true/false, 1/0)"


def test_integer():
    assert env.integer("N", 30, {}) == 30
    assert env.integer("N", 30, {"N": "5"}) == 5
    assert err(env.integer, "N", 30, {"N": "five"}) == "N must be a whole number"
    assert err(env.integer, "N", 30, {"N": "-1"}) == "N must be at least 0"


# --- hosts and the uWSGI Host rule ---------------------------------------------------------------------------
def test_allowed_hosts_parsing():
    assert env.allowed_hosts({"DJANGO_ALLOWED_HOSTS": " Example.com, .app.test ,localhost"}) == [
        "example.com", ".app.test", "localhost"]


def test_allowed_hosts_errors():
    assert err(env.allowed_hosts, {}) == "DJANGO_ALLOWED_HOSTS is not set; set it in the environment"
    assert err(env.allowed_hosts, {"DJANGO_ALLOWED_HOSTS": " , "}) == (
        "DJANGO_ALLOWED_HOSTS is empty; list the host names this app answers to, comma separated")
    assert err(env.allowed_hosts, {"DJANGO_ALLOWED_HOSTS": "https://x.com,y.com:80"}) == (
        "DJANGO_ALLOWED_HOSTS has 2 invalid entries (host names only: no scheme, port or path)")


@pytest.mark.parametrize("host,ok", [
    ("example.com", True), ("EXAMPLE.com:8000", True), ("www.app.test", True), ("app.test", True),
    ("a.b.app.test:443", True), ("localhost", True),
    ("evil.com", False), ("example.com.evil.com", False), ("exampleXcom", False), ("", False),
    ("example.com:", False), ("example.com:80:80", False), ("evilapp.test", False), ("localhost/x", False),
])
def test_host_regex_matches_like_allowed_hosts(host, ok):
    import re

    rx = env.host_regex(["example.com", ".app.test", "localhost"])
    assert bool(re.search(rx, host)) is ok


def test_host_regex_star_and_exact_text():
    assert env.host_regex(["*"]) == r"^.+$"
    assert env.host_regex(["a.b"]) == r"(?i)^(a\.b)(:[0-9]{1,5})?$"


def test_health_host_is_allowed():
    assert env.health_host(["example.com"]) == "example.com"
    assert env.health_host([".app.test", "x.org"]) == "x.org"
    assert env.health_host([".app.test"]) == "health.app.test"
    assert env.health_host(["*"]) == "localhost"


# --- trusted proxy -------------------------------------------------------------------------------------------
def test_trusted_proxies():
    assert env.trusted_proxies({}) == ()
    nets = env.trusted_proxies({"DJANGO_TRUSTED_PROXY": "10.0.0.0/8, 192.168.1.5"})
    assert [str(n) for n in nets] == ["10.0.0.0/8", "192.168.1.5/32"]
    assert err(env.trusted_proxies, {"DJANGO_TRUSTED_PROXY": "proxy.local"}) == (
        "DJANGO_TRUSTED_PROXY must be IP addresses or networks (CIDR), comma separated")


# --- DATABASE_URL --------------------------------------------------------------------------------------------
def test_database_empty_means_none():
    assert env.database({"DATABASE_URL": ""}) is None
    assert env.database({"DATABASE_URL": "  "}) is None


def test_database_parsed():
    db = env.database({"DATABASE_URL": "postgres://app:p%40ss%2Fw@db:6543/notes?sslmode=require"})
    assert db == {"ENGINE": "django.db.backends.postgresql", "NAME": "notes", "USER": "app", "PASSWORD": "p@ss/w",
                  "HOST": "db", "PORT": "6543", "OPTIONS": {"sslmode": "require"}}


def test_database_default_port_and_file(tmp_path):
    f = tmp_path / "url"
    f.write_text("postgresql://u:secretpw@db/n\n")
    db = env.database({"DATABASE_URL_FILE": str(f)})
    assert (db["PORT"], db["PASSWORD"]) == ("5432", "secretpw")


@pytest.mark.parametrize("url,msg", [
    ("mysql://u:topsecret@h/n", "DATABASE_URL has an unsupported scheme; use postgres://USER:PASSWORD@HOST:PORT/NAME"),
    ("postgres://u:topsecret@h:99999/n", "DATABASE_URL is not a valid URL; use postgres://USER:PASSWORD@HOST:PORT/NAME"),
    ("postgres://u:topsecret@h/", "DATABASE_URL needs a host and a database name; use postgres://USER:PASSWORD@HOST:PORT/NAME"),
])
def test_database_errors_never_print_password(url, msg):
    text = err(env.database, {"DATABASE_URL": url})
    assert text == msg and "topsecret" not in text


def test_database_missing():
    assert err(env.database, {}) == "DATABASE_URL is not set; set it (or DATABASE_URL_FILE) in the environment"


# --- preflight: classify and bounded wait --------------------------------------------------------------------
def test_classify():
    assert classify('FATAL:  password authentication failed for user "app"') == "auth"
    assert classify('FATAL:  database "nope" does not exist') == "nodb"
    assert classify('FATAL:  role "ghost" does not exist') == "auth"
    assert classify("connection refused") == "retry"


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += s


DB = {"HOST": "db", "PORT": "5432", "USER": "app", "PASSWORD": "s3cr3t-pw", "NAME": "notes"}


def test_wait_gives_up_at_deadline_naming_host_port():
    clock = FakeClock()

    def refuse(**kw):
        clock.t += 0.1
        raise OSError("connection refused")

    msg = wait_for_db(DB, 3, connect=refuse, clock=clock, sleep=clock.sleep)
    assert msg == ("cannot reach Postgres at db:5432 after 3s (DATABASE_WAIT_TIMEOUT); "
                   "check that it runs and that the host and port are right")
    assert 3 <= clock.t < 4


def test_wait_auth_and_missing_db_fail_at_once():
    clock = FakeClock()

    def bad_pw(**kw):
        raise OSError('FATAL:  password authentication failed for user "app" (password s3cr3t-pw)')

    msg = wait_for_db(DB, 30, connect=bad_pw, clock=clock, sleep=clock.sleep)
    assert msg == "Postgres at db:5432 rejected the credentials of user 'app'; check DATABASE_URL"
    assert clock.t == 0 and "s3cr3t" not in msg

    def no_db(**kw):
        raise OSError('FATAL:  database "notes" does not exist')

    assert wait_for_db(DB, 30, connect=no_db, clock=clock, sleep=clock.sleep) == (
        "database 'notes' does not exist on Postgres at db:5432; create it or fix DATABASE_URL")


def test_wait_succeeds_after_retries():
    clock, calls = FakeClock(), []

    def later(**kw):
        calls.append(kw)
        if len(calls) < 3:
            raise OSError("connection refused")

    assert wait_for_db(DB, 30, connect=later, clock=clock, sleep=clock.sleep) is None
    assert calls[-1]["password"] == "s3cr3t-pw" and calls[-1]["dbname"] == "notes"


# --- the settings module through manage.py (host Django 5.2) -------------------------------------------------
def manage(*args, **environ):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_"))}
    base["PYTHONPATH"] = str(REPO)  # djdeploy_django, as the image installs it
    return subprocess.run([sys.executable, "manage.py", *args], cwd=PROJECT, env={**base, **environ},
                          capture_output=True, text=True, timeout=60)


def test_check_deploy_passes_with_production_settings():
    r = manage("check", "--deploy", "--fail-level", "WARNING", **GOOD)
    assert r.returncode == 0, r.stderr


def test_check_deploy_fails_with_debug_on():
    r = manage("check", "--deploy", "--fail-level", "WARNING", DJANGO_DEBUG="on", **GOOD)
    assert r.returncode != 0 and "security.W018" in r.stderr


def test_missing_secret_key_is_one_line():
    environ = dict(GOOD)
    del environ["DJANGO_SECRET_KEY"]
    r = manage("check", **environ)
    assert r.returncode == 1
    assert r.stderr == "error: DJANGO_SECRET_KEY is not set; set it (or DJANGO_SECRET_KEY_FILE) in the environment\n"


def test_invalid_database_url_is_one_line_without_password():
    r = manage("check", **{**GOOD, "DATABASE_URL": "mysql://u:hunter2pw@h/n"})
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "DATABASE_URL" in r.stderr and "hunter2pw" not in r.stderr + r.stdout


def test_secret_key_and_file_both_set(tmp_path):
    f = tmp_path / "k"
    f.write_text(KEY)
    r = manage("check", DJANGO_SECRET_KEY_FILE=str(f), **GOOD)
    assert r.stderr == "error: DJANGO_SECRET_KEY and DJANGO_SECRET_KEY_FILE are both set; set only one of them\n"


def test_no_migrations_missing():
    r = manage("makemigrations", "--check", "--dry-run", **GOOD)
    assert r.returncode == 0, r.stdout + r.stderr
