"""With a real Postgres (postgres:17-trixie on a network the test creates): migrations, notes persist, readiness,
the entrypoint's bounded wait and its distinct failures, and the hardened read-only run with an admin login."""

import re
import time

import pytest

from deploy.image.smoke import get

from .conftest import LABEL, raw, secret_key, split, wait_for

pytestmark = pytest.mark.engine


def run_once(docker_client, image, network, env, command, timeout=90):
    """Run a one-off container to completion; return (exit code, logs)."""
    environment = {"DJANGO_SECRET_KEY": secret_key(), "DJANGO_ALLOWED_HOSTS": "localhost", **env}
    container = docker_client.containers.run(image, command, detach=True, environment=environment,
                                             network=network.name, labels=LABEL)
    try:
        code = container.wait(timeout=timeout)["StatusCode"]
        return code, container.logs().decode("utf-8", "replace")
    finally:
        container.remove(force=True)


def cookies(headers_text):
    return dict(re.findall(r"Set-Cookie: ([^=;]+)=([^;]*)", headers_text, flags=re.I))


def post_form(port, path, fields, jar, host="localhost"):
    from urllib.parse import urlencode

    body = urlencode(fields).encode()
    cookie = "; ".join(f"{k}={v}" for k, v in jar.items())
    req = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
           f"Content-Length: {len(body)}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n").encode() + body
    return split(raw(port, req))


def get_form(port, path, jar=None):
    cookie = "; ".join(f"{k}={v}" for k, v in (jar or {}).items())
    status, head, body = split(raw(port, f"GET {path} HTTP/1.1\r\nHost: localhost\r\nCookie: {cookie}\r\n"
                                         f"Connection: close\r\n\r\n".encode()))
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body)
    return status, head, body, token.group(1).decode() if token else None


def test_migrate_then_notes_persist_across_containers(docker_client, built_image, network, postgres, start):
    code, logs = run_once(docker_client, built_image.ref, network, {"DATABASE_URL": postgres["url"]},
                          ["python", "manage.py", "migrate", "--noinput"])
    assert code == 0 and "Applying notes.0001_initial... OK" in logs, logs
    assert postgres["password"] not in logs
    env = {"DATABASE_URL": postgres["url"], "DJANGO_MANAGEPY_MIGRATE": "on"}  # idempotent second run
    app = start(env=env, network=network.name)
    status, head, body, token = get_form(app.port, "/")
    jar = cookies(head)
    status, head, _ = post_form(app.port, "/", {"csrfmiddlewaretoken": token, "text": "kept across restarts"}, jar)
    assert status == 302, head
    app.container.remove(force=True)
    again = start(env={"DATABASE_URL": postgres["url"]}, network=network.name)
    assert b"<li>kept across restarts</li>" in get(again.port, "/")[2]


def test_readiness_follows_the_database_liveness_does_not(docker_client, built_image, network, postgres, start):
    app = start(env={"DATABASE_URL": postgres["url"], "DJANGO_MANAGEPY_MIGRATE": "on"}, network=network.name)
    assert get(app.port, "/health/?ready=1")[:3:2] == (200, b"ok")
    for _ in range(10):  # every worker now holds a kept-alive connection (CONN_MAX_AGE)
        assert get(app.port, "/")[0] == 200
    postgres["container"].pause()
    try:
        for _ in range(3):  # whichever worker answers: a frozen server gives 503 within connect_timeout
            assert get(app.port, "/health/?ready=1", timeout=15)[0] == 503
        assert get(app.port, "/health/")[:3:2] == (200, b"ok")
    finally:
        postgres["container"].unpause()
    wait_for("readiness back", lambda: get(app.port, "/health/?ready=1")[0] == 200, timeout=20)


def test_readiness_without_a_database_is_200(start):
    app = start()
    assert get(app.port, "/health/?ready=1")[:3:2] == (200, b"ok")


def test_unreachable_database_wait_is_bounded_and_names_host_port(docker_client, built_image, network, postgres):
    url = postgres["url"].replace(":5432/", ":5499/")
    t0 = time.monotonic()
    code, logs = run_once(docker_client, built_image.ref, network, {"DATABASE_URL": url, "DATABASE_WAIT_TIMEOUT": "3"},
                          ["uwsgi"])
    took = time.monotonic() - t0
    assert code != 0 and 3 <= took < 15
    assert logs.strip() == (f"error: cannot reach Postgres at {postgres['host']}:5499 after 3s (DATABASE_WAIT_TIMEOUT); "
                            "check that it runs and that the host and port are right")


def test_wrong_credentials_fail_at_once_without_the_password(docker_client, built_image, network, postgres):
    url = f"postgres://app:Wrong-Secret-42@{postgres['host']}:5432/notes"
    t0 = time.monotonic()
    code, logs = run_once(docker_client, built_image.ref, network, {"DATABASE_URL": url, "DATABASE_WAIT_TIMEOUT": "60"},
                          ["uwsgi"])
    assert code != 0 and time.monotonic() - t0 < 10
    assert logs.strip() == (f"error: Postgres at {postgres['host']}:5432 rejected the credentials of user 'app'; "
                            "check DATABASE_URL")
    assert "Wrong-Secret-42" not in logs


def test_missing_database_fails_at_once_with_its_own_message(docker_client, built_image, network, postgres):
    url = postgres["url"].replace("/notes", "/nosuchdb")
    code, logs = run_once(docker_client, built_image.ref, network, {"DATABASE_URL": url, "DATABASE_WAIT_TIMEOUT": "60"},
                          ["uwsgi"], timeout=20)
    assert code != 0
    assert logs.strip() == (f"error: database 'nosuchdb' does not exist on Postgres at {postgres['host']}:5432; "
                            "create it or fix DATABASE_URL")
    assert postgres["password"] not in logs


def test_hardened_read_only_run_pages_static_and_admin_login(docker_client, built_image, network, postgres, start):
    env = {"DATABASE_URL": postgres["url"]}
    code, logs = run_once(docker_client, built_image.ref, network,
                          {**env, "DJANGO_SUPERUSER_PASSWORD": "Adm1n-pass-xyz", "DJANGO_MANAGEPY_MIGRATE": "on"},
                          ["python", "manage.py", "createsuperuser", "--noinput", "--username", "admin",
                           "--email", "admin@example.com"])
    assert code == 0, logs
    app = start(env=env, network=network.name, read_only=True, tmpfs={"/tmp": ""}, cap_drop=["ALL"],
                security_opt=["no-new-privileges"])
    assert get(app.port, "/")[0] == 200
    page = get(app.port, "/")[2].decode()
    css = re.search(r"/static/notes/app\.[0-9a-f]{12}\.css", page).group(0)
    assert get(app.port, css)[0] == 200
    status, head, _, token = get_form(app.port, "/admin/login/?next=/admin/")
    assert status == 200 and token
    jar = cookies(head)
    status, head, _ = post_form(app.port, "/admin/login/?next=/admin/",
                                {"csrfmiddlewaretoken": token, "username": "admin", "password": "Adm1n-pass-xyz",
                                 "next": "/admin/"}, jar)
    assert status == 302 and "Location: /admin/" in head, head
    jar.update(cookies(head))
    status, _, body, _ = get_form(app.port, "/admin/", jar)
    assert status == 200 and b"Site administration" in body
