"""`docker stop` (SIGTERM) ends the container within 2 s at every step of its life: while the entrypoint waits for
Postgres, while migrate runs (blocked on a lock), while the uWSGI workers still load Django, and for a one-off
command such as the deploy's `python manage.py migrate`. Each test measures one `docker stop` once (no retries)."""

import threading
import time

import pytest

from .conftest import wait_for

pytestmark = pytest.mark.engine

LIMIT = 2.0  # seconds from SIGTERM to exit (RELIABILITY 45)


def timed_stop(container):
    """`docker stop` with Docker's default 10 s grace period; (seconds it took, exit code, logs)."""
    t0 = time.monotonic()
    container.stop(timeout=10)
    took = time.monotonic() - t0
    code = container.wait(timeout=5)["StatusCode"]
    return took, code, container.logs().decode("utf-8", "replace")


def running(container, needle):
    """True once a process whose command line contains `needle` runs in the container."""
    container.reload()
    if container.status == "exited":
        raise AssertionError("container exited:\n" + container.logs().decode("utf-8", "replace")[-3000:])
    return any(needle in " ".join(p) for p in container.top()["Processes"])


@pytest.mark.parametrize("address", ["127.0.0.1:5499", "192.0.2.1:5432"], ids=["refused", "unanswered"])
def test_stop_during_the_database_wait(start, address):
    """Refused: the wait retries every 0.5 s. Unanswered (TEST-NET-1): the client hangs in connect()."""
    app = start(env={"DATABASE_URL": f"postgres://app:pw@{address}/notes", "DATABASE_WAIT_TIMEOUT": "60"},
                ready=False)
    wait_for("the entrypoint to wait for Postgres", lambda: running(app.container, "--wait-for-db"), timeout=20)
    took, code, logs = timed_stop(app.container)
    assert took < LIMIT, f"docker stop took {took:.2f}s during the database wait\n{logs}"
    assert code == 143 and "uWSGI" not in logs, logs  # stopped by SIGTERM; nothing after the wait ran


def psql(postgres, sql, detach=False):
    return postgres["container"].exec_run(
        ["psql", "-h", "127.0.0.1", "-U", postgres["user"], "-d", postgres["db"], "-v", "ON_ERROR_STOP=1",
         "-tAc", sql], environment={"PGPASSWORD": postgres["password"]}, detach=detach)


def query(postgres, sql):
    code, out = psql(postgres, sql)
    assert code == 0, out
    return out.decode().strip()


# Django's migration table, created the way Django creates it, then locked by another session: every migrate
# blocks on its first SELECT of it, as it does behind a long-running migration of another deploy.
MIGRATIONS_TABLE = ("CREATE TABLE django_migrations (id bigserial PRIMARY KEY, app varchar(255) NOT NULL, "
                    "name varchar(255) NOT NULL, applied timestamptz NOT NULL)")
HOLD_LOCK = "BEGIN; LOCK TABLE django_migrations IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(300);"
WAITING = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
TERMINATE_WAITING = ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                     "WHERE wait_event_type = 'Lock' AND datname = current_database()")
LOCKED = ("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
          "WHERE c.relname = 'django_migrations' AND l.mode = 'AccessExclusiveLock' AND l.granted")


def test_stop_during_migrate(start, network, postgres):
    """Both ways migrate runs: the entrypoint's DJANGO_MANAGEPY_MIGRATE=on before uWSGI, and a one-off
    `python manage.py migrate` command (what `inv deploy` runs once per deploy)."""
    query(postgres, MIGRATIONS_TABLE)
    psql(postgres, HOLD_LOCK, detach=True)
    wait_for("the lock on django_migrations", lambda: query(postgres, LOCKED) == "1", timeout=20)
    ways = {"entrypoint": ({"DJANGO_MANAGEPY_MIGRATE": "on"}, None),
            "command": ({}, ["python", "manage.py", "migrate", "--noinput"])}
    for way, (env, command) in ways.items():
        app = start(env={"DATABASE_URL": postgres["url"], **env}, command=command, network=network.name,
                    ready=False)
        wait_for(f"migrate ({way}) to block on the lock", lambda: query(postgres, WAITING) == "1", timeout=30)
        assert running(app.container, "manage.py migrate")
        took, code, logs = timed_stop(app.container)
        assert took < LIMIT, f"docker stop took {took:.2f}s during migrate ({way})\n{logs}"
        assert code == 143 and "uWSGI" not in logs, (way, logs)
        # a backend waiting for a lock notices its client is gone only once it gets the lock: end it here
        query(postgres, TERMINATE_WAITING)
        wait_for("the stopped migrate's session to end", lambda: query(postgres, WAITING) == "0", timeout=20)


SLOW_WSGI = """import sys, time
{first}
sys.stderr.write("slow load started\\n")
time.sleep(30)
{second}
"""


def slow_loading_app(start, tmp_path, first, second):
    """Both workers stuck for 30 s while loading the app (lazy-apps), as if Django took that long to import."""
    path = tmp_path / "slow_wsgi.py"
    path.write_text(SLOW_WSGI.format(first=first, second=second))
    path.chmod(0o644)
    app = start(env={"UWSGI_MODULE": "slow_wsgi:application", "UWSGI_PYTHONPATH": "/test"}, ready=False,
                volumes={str(path): {"bind": "/test/slow_wsgi.py", "mode": "ro"}})
    wait_for("both workers to be loading the app", lambda: app.logs().count("slow load started") == 2, timeout=20)
    return app


def test_stop_while_workers_load_the_app(start, tmp_path):
    """djdeploy_django.wsgi handles SIGHUP while the app loads (uWSGI 2.0.30 ignores it there, and its master then
    waits for the worker forever)."""
    app = slow_loading_app(start, tmp_path, "from djdeploy_django.wsgi import application  # noqa", "")
    took, code, logs = timed_stop(app.container)
    assert took < LIMIT, f"docker stop took {took:.2f}s while the workers loaded the app\n{logs}"
    assert code == 0 and logs.count("stopped while loading the app") == 2, logs


def test_without_the_handler_a_stop_while_loading_hangs(start, tmp_path):
    """Control: the same app loading before djdeploy_django.wsgi is imported is not stopped by SIGTERM at all."""
    app = slow_loading_app(start, tmp_path, "", "from djdeploy_django.wsgi import application  # noqa")
    t0 = time.monotonic()
    app.container.stop(timeout=3)
    assert time.monotonic() - t0 >= 3 and app.container.wait(timeout=5)["StatusCode"] == 137  # SIGKILLed


def test_stop_while_serving_idle_and_under_load(start):
    """uWSGI serving: an idle stop and a stop under steady traffic both end within the limit, exit 0."""
    from deploy.image.smoke import get

    for load in (False, True):
        app = start()
        stop = threading.Event()

        def traffic():
            while not stop.is_set():
                try:
                    get(app.port, "/health/", timeout=2)
                except Exception:  # noqa: BLE001 - refused/reset once the server stops
                    pass

        threads = [threading.Thread(target=traffic, daemon=True) for _ in range(4 if load else 0)]
        for t in threads:
            t.start()
        try:
            took, code, logs = timed_stop(app.container)
        finally:
            stop.set()
            for t in threads:
                t.join(5)
        assert took < LIMIT and code == 0, f"load={load}: docker stop took {took:.2f}s, exit {code}\n{logs}"
