"""uWSGI as configured: the Host rule before Django, static files, forwarded-proto, health check, keep-alive."""

import re
import socket
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

import pytest

from deploy.image.smoke import get

from .conftest import raw, split, wait_for

pytestmark = pytest.mark.engine

ALLOWED = "app.example.com,.tenant.test,localhost"


@pytest.fixture(scope="module")
def app(docker_client, built_image):
    """One container shared by the read-only checks of this module."""
    from .conftest import LABEL, App, free_port, secret_key

    port = free_port()
    container = docker_client.containers.run(
        built_image.ref, detach=True, labels=LABEL, ports={"8000/tcp": ("127.0.0.1", port)},
        environment={"DATABASE_URL": "", "DJANGO_SECRET_KEY": secret_key(), "DJANGO_ALLOWED_HOSTS": ALLOWED})
    app = App(container, port)
    try:
        yield app.wait_ready()
    finally:
        print(f"--- logs of the shared app container ---\n{app.logs()[-4000:]}")
        container.remove(force=True)


def static_path(app):
    body = get(app.port, "/")[2].decode()
    return re.search(r"/static/notes/app\.[0-9a-f]{12}\.css", body).group(0)


@pytest.mark.parametrize("path", ["/", "/health/", "/admin/login/", "/static/notes/app.css", "HASHED", "/nope"])
@pytest.mark.parametrize("host", [
    b"Host: evil.com\r\n", b"Host: evil.com:8000\r\n", b"Host: app.example.com.evil.com\r\n",
    b"Host: evilapp.example.com\r\n", b"Host: 127.0.0.1\r\n", b"Host: notenant.test\r\n",
    b"Host: evil.com\r\nHost: localhost\r\n", b"",  # missing Host
])
def test_foreign_or_missing_host_gets_400_with_empty_body(app, path, host):
    path = static_path(app) if path == "HASHED" else path
    for version in (b"HTTP/1.1", b"HTTP/1.0"):
        status, head, body = split(raw(app.port, b"GET " + path.encode() + b" " + version + b"\r\n" + host +
                                       b"Connection: close\r\n\r\n"))
        assert (status, body) == (400, b""), head
        assert "X-Frame-Options" not in head  # answered by uWSGI: Django's security middleware never saw it


def test_empty_host_value_never_reaches_django(app):
    """uWSGI 2.0's HTTP router drops a request whose Host header is empty: no response at all (not a 400)."""
    response = raw(app.port, b"GET / HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n")
    assert response == b"" or split(response)[0] == 400


@pytest.mark.parametrize("host", ["app.example.com", "APP.example.com:8000", "localhost:1234", "a.tenant.test",
                                  "tenant.test:443", "x.y.tenant.test"])
def test_allowed_hosts_with_or_without_port_pass(app, host):
    status, headers, body = get(app.port, "/health/", host=host)
    assert (status, body) == (200, b"ok")
    assert static_path(app)


def test_every_response_carries_app_version(app, built_image):
    """Django's responses (middleware) and uWSGI's static files (a route) alike."""
    tag = built_image.ref.split(":", 1)[1]
    for path in ("/", "/health/", "/admin/login/", "/missing/", static_path(app), "/static/admin/css/base.css"):
        assert get(app.port, path)[1].get_all("X-App-Version") == [tag], path


def test_hashed_static_far_future_unhashed_not(app):
    status, headers, body = get(app.port, static_path(app))
    assert status == 200 and b"font-family" in body
    expires = parsedate_to_datetime(headers["Expires"])
    assert expires >= datetime.now(timezone.utc) + timedelta(days=364)
    assert headers.get_all("Cache-Control") == ["public, max-age=31536000, immutable"]
    for unhashed in ("/static/notes/app.css", "/static/admin/css/base.css"):   # short caching: a minute
        status, headers, _ = get(app.port, unhashed)
        assert status == 200 and "Expires" not in headers, unhashed
        assert headers.get_all("Cache-Control") == ["public, max-age=60"], unhashed


def test_hashed_static_file_route_headers_and_logging(app):
    """The `file` route (one write per response) answers like the static map did; only a miss is logged."""
    path = static_path(app)
    with socket.create_connection(("127.0.0.1", app.port), timeout=10) as sock:  # keep-alive, several answers
        fh = sock.makefile("rb")
        for _ in range(3):
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            head = b"".join(iter(fh.readline, b"\r\n")).decode()
            length = int(re.search(r"Content-Length: (\d+)", head).group(1))
            assert head.startswith("HTTP/1.1 200") and "Content-Type: text/css" in head
            assert b"font-family" in fh.read(length)
    status, headers, body = get(app.port, path.replace(".css", ".js").replace("/app.", "/nope."))
    assert status == 404 and "Expires" not in headers  # a miss is never cacheable (another release may have it)
    assert headers.get_all("Cache-Control") == ["no-store"]
    head_request = f"HEAD {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    status, head, body = split(raw(app.port, head_request.encode()))
    assert status == 200 and body == b"" and "Expires:" in head
    assert "Cache-Control: public, max-age=31536000, immutable" in head.splitlines()
    wait_for("the miss to be logged", lambda: "GET /static/notes/nope." in app.logs())
    served = re.compile(r"(GET|HEAD) /static/\S+ => .*\(HTTP/1\.1 200\)")  # 400s for foreign hosts are logged
    assert not served.search(app.logs()), app.logs()[-3000:]


@pytest.mark.parametrize("path", ["/static/../config/settings.py", "/static/%2e%2e/config/settings.py",
                                  "/static/..%2fconfig/settings.py", "/static//app/config/settings.py",
                                  "/static/../../etc/passwd",
                                  # hashed-looking names: the `file` route's pattern must not match them either
                                  "/static/../config/settings.0123456789ab.py",
                                  "/static/notes/..%2f..%2fconfig/settings.0123456789ab.py",
                                  "/static/.hidden.0123456789ab.css", "/static//etc/passwd.0123456789ab.txt"])
def test_no_path_traversal_out_of_static_root(app, path):
    status, head, body = split(raw(app.port, f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()))
    assert status in (400, 404) and b"SECRET_KEY" not in body and b"root:" not in body


def test_large_headers_and_rejected_body_keep_the_connection(app):
    """A 12 KB header is served, an oversized one is refused, a rejected POST body is drained; the keep-alive
    connection keeps working after each, and the server stays up."""
    with socket.create_connection(("127.0.0.1", app.port), timeout=10) as sock:
        fh = sock.makefile("rb")

        def exchange(request):
            sock.sendall(request)
            status_line = fh.readline()
            headers = {}
            while (line := fh.readline()) not in (b"\r\n", b""):
                k, _, v = line.decode().partition(":")
                headers[k.strip().lower()] = v.strip()
            body = fh.read(int(headers.get("content-length", "0")))
            return int(status_line.split()[1]), headers, body

        big = b"X-Big: " + b"a" * 12000 + b"\r\n"
        assert exchange(b"GET /health/ HTTP/1.1\r\nHost: localhost\r\n" + big + b"\r\n")[0] == 200
        body = b"text=" + b"x" * 1_000_000
        status, _, _ = exchange(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded"
                                b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        assert status == 403  # CSRF refuses it; the body was consumed
        assert exchange(b"GET /health/ HTTP/1.1\r\nHost: localhost\r\n\r\n")[:3:2] == (200, b"ok")
    huge = b"X-Huge: " + b"a" * 70000 + b"\r\n"
    response = raw(app.port, b"GET /health/ HTTP/1.1\r\nHost: localhost\r\n" + huge + b"Connection: close\r\n\r\n")
    assert response == b"" or split(response)[0] >= 400
    assert get(app.port, "/health/")[0] == 200


@pytest.mark.parametrize("header", [b"X-Forwarded-Proto: https", b"X-Forwarded-Ssl: on", b"X-Forwarded-Scheme: https",
                                    b"Forwarded: proto=https"])
def test_client_cannot_fake_https(start, header):
    """With Django's own HTTPS redirect on, a direct client claiming HTTPS still gets redirected."""
    app = start(env={"DJANGO_SECURE_SSL_REDIRECT": "on"})
    status, head, _ = split(raw(app.port, b"GET / HTTP/1.1\r\nHost: localhost\r\n" + header +
                                b"\r\nConnection: close\r\n\r\n"))
    assert status == 301 and "Location: https://localhost/" in head


def test_trusted_proxy_forwarded_proto_is_honoured(start):
    app = start(env={"DJANGO_SECURE_SSL_REDIRECT": "on", "DJANGO_TRUSTED_PROXY": "0.0.0.0/0"})
    status, head, _ = split(raw(app.port, b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: https\r\n"
                                          b"Connection: close\r\n\r\n"))
    assert status == 200 and "Strict-Transport-Security: max-age=31536000" in head
    assert split(raw(app.port, b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"))[0] == 301


def test_healthcheck_sends_an_allowed_host_and_turns_unhealthy(start, docker_client):
    """The image's own HEALTHCHECK command (faster interval for the test) reports healthy with a custom host list,
    and unhealthy once uWSGI stops answering."""
    app = start(env={"DJANGO_ALLOWED_HOSTS": "shop.example.org"}, ready=False,
                healthcheck={"test": ["CMD", "python", "-m", "djdeploy_django.healthcheck"], "interval": 500_000_000,
                             "timeout": 2_000_000_000, "retries": 2, "start_period": 0})

    def health():
        app.container.reload()
        return app.container.attrs["State"]["Health"]["Status"]

    wait_for("healthy", lambda: health() == "healthy", timeout=30)
    # uWSGI answers 400 to a foreign Host, so "healthy" proves the check sent shop.example.org
    assert get(app.port, "/health/", host="localhost")[0] == 400
    # SIGSTOP every process but PID 1 (the master): the HTTP router and the workers stop answering
    app.container.exec_run(["sh", "-c", "kill -STOP -1"], user="10001")
    wait_for("unhealthy", lambda: health() == "unhealthy", timeout=30)


def test_arbitrary_uid_works(start):
    app = start(user="54321:0")
    assert get(app.port, "/")[0] == 200


def test_pid1_is_uwsgi_master(app):
    code, out = app.container.exec_run(["cat", "/proc/1/cmdline"])
    argv = out.split(b"\0")  # pyuwsgi: "python /opt/venv/bin/uwsgi"
    assert argv[0].endswith(b"uwsgi") or argv[1] == b"/opt/venv/bin/uwsgi", argv


def test_pid1_reaps_orphaned_zombies(app):
    """An orphan re-parented to PID 1 (the uWSGI master) is reaped when it exits: no zombie stays behind."""
    app.container.exec_run(["sh", "-c", "sleep 0.3 & exit 0"])
    wait_for("the master to reap the orphan", lambda: "exited with code 0" in app.logs(), timeout=10)
    code, out = app.container.exec_run(["sh", "-c", "grep -l '^State:.*Z' /proc/[0-9]*/status || true"])
    assert out.strip() == b""
