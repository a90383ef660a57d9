"""The postgres:17-trixie stand-in honors the official image's variables and stops cleanly."""

from __future__ import annotations

import secrets

import pytest

from labhelpers import TEST_LABEL, poll
from deploy.local.localenv import DEFAULTS

pytestmark = pytest.mark.engine

IMAGE = DEFAULTS["POSTGRES_IMAGE"]


@pytest.fixture
def start_pg(docker_client, request):
    made = []

    def start(**env):
        container = docker_client.containers.run(IMAGE, detach=True, environment=env, labels=TEST_LABEL)
        made.append(container)
        return container

    yield start
    for container in made:
        report = getattr(request.node, "rep_call", None)
        if report is None or report.failed:
            print(f"--- logs of {container.name}:\n" + container.logs().decode(errors="replace"))
        container.remove(force=True, v=True)


def _health(container):
    container.reload()
    return container.attrs["State"].get("Health", {}).get("Status")


def _wait_healthy(container, timeout=90):
    def check():
        status = _health(container)
        if container.status == "exited":
            pytest.fail("postgres exited:\n" + container.logs().decode(errors="replace"))
        return status == "healthy"
    poll(check, timeout, f"{container.name} to be healthy")


def _psql(container, password, sql, user="alice", db="notes"):
    return container.exec_run(["psql", "-h", "127.0.0.1", "-U", user, "-d", db, "-tAc", sql],
                              environment={"PGPASSWORD": password})


def test_variables_create_user_and_database_with_password_auth(start_pg):
    password = secrets.token_urlsafe(12)
    pg = start_pg(POSTGRES_USER="alice", POSTGRES_PASSWORD=password, POSTGRES_DB="notes",
                  PGDATA="/var/lib/postgresql/data/pgdata")
    _wait_healthy(pg)
    out = _psql(pg, password, "select current_user || ' ' || current_database()")
    assert (out.exit_code, out.output.decode().strip()) == (0, "alice notes")
    wrong = _psql(pg, "not-" + password, "select 1")
    assert wrong.exit_code != 0 and b"password authentication failed" in wrong.output
    assert pg.exec_run(["test", "-s", "/var/lib/postgresql/data/pgdata/PG_VERSION"]).exit_code == 0
    hba = pg.exec_run(["cat", "/var/lib/postgresql/data/pgdata/pg_hba.conf"]).output.decode()
    assert "host all all all scram-sha-256" in hba
    pid1 = pg.exec_run(["cat", "/proc/1/comm", "/proc/1/status"]).output.decode()
    assert pid1.startswith("postgres\n") and "\nUid:\t999\t" in pid1  # the server itself is PID 1, as postgres
    assert password not in str(pg.attrs["Config"]["Cmd"])


def test_data_survives_restart_without_reinit_and_stop_is_clean(start_pg):
    password = secrets.token_urlsafe(12)
    pg = start_pg(POSTGRES_USER="alice", POSTGRES_PASSWORD=password, POSTGRES_DB="notes")
    _wait_healthy(pg)
    assert _psql(pg, password, "create table t (x int); insert into t values (42)").exit_code == 0
    pg.stop(timeout=30)
    pg.reload()
    assert pg.attrs["State"]["ExitCode"] == 0, pg.logs().decode(errors="replace")
    pg.start()
    _wait_healthy(pg)
    assert _psql(pg, password, "select x from t").output.decode().strip() == "42"
    assert pg.logs().decode().count("PostgreSQL init process complete") == 1


def test_missing_password_stops_with_a_message(start_pg, docker_client):
    pg = start_pg(POSTGRES_USER="alice")
    code = pg.wait(timeout=60)["StatusCode"]
    assert code == 1
    assert "POSTGRES_PASSWORD is not set" in pg.logs().decode()
