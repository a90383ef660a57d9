"""Start, stop and failure behaviour of the container: graceful stop, fail-fast configuration, harakiri, recycling."""

import threading
import time

import pytest

from deploy.image.smoke import get

from .conftest import wait_for

pytestmark = pytest.mark.engine


def slow_request(app, seconds):
    """Start GET /test/slow/ in a thread; return (thread, result dict); waits until the worker is inside the view."""
    result = {}

    def go():
        try:
            result["response"] = get(app.port, f"/test/slow/?seconds={seconds}", timeout=seconds + 15)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            result["error"] = exc

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    wait_for("the slow request to be in flight", lambda: "slow request started" in app.logs(), timeout=10)
    return thread, result


def test_docker_stop_drains_an_in_flight_request_and_exits_0(start):
    app = start(env={"DJANGO_TEST_ENDPOINTS": "on"})
    thread, result = slow_request(app, 2)
    t0 = time.monotonic()
    app.container.stop(timeout=10)
    stopped = time.monotonic() - t0
    thread.join(10)
    status, _, body = result["response"]
    assert (status, body) == (200, b"slept 2")
    assert app.container.wait(timeout=5)["StatusCode"] == 0
    assert 1.0 < stopped < 5.0  # waited for the request, well inside the 10 s grace period
    assert "graceful shutdown triggered" in app.logs()


def test_without_the_hook_sigterm_does_not_drain(start):
    """Control: uWSGI 2.0's default SIGTERM (brutal reload) does not exit; docker has to SIGKILL it."""
    app = start(env={"DJANGO_TEST_ENDPOINTS": "on", "UWSGI_HOOK_MASTER_START": "print:no graceful hook"})
    thread, result = slow_request(app, 2)
    app.container.stop(timeout=3)
    thread.join(10)
    assert app.container.wait(timeout=5)["StatusCode"] != 0
    assert result.get("response", (None,))[0] != 200


def test_test_endpoint_is_off_by_default(start):
    app = start()
    assert get(app.port, "/test/slow/?seconds=0")[0] == 404


def exits_within(container, seconds):
    t0 = time.monotonic()
    code = container.wait(timeout=seconds)["StatusCode"]
    return code, time.monotonic() - t0, container.logs().decode("utf-8", "replace")


@pytest.mark.parametrize("env,expect", [
    ({"UWSGI_NOT_AN_OPTION": "1"}, "unknown config directive: not-an-option"),
    ({"UWSGI_MODULE": "config.missing:application"}, "no app loaded"),
    ({"UWSGI_MODULE": "manage:application"}, "no app loaded"),  # a module without an `application` callable
])
def test_broken_uwsgi_configuration_exits_non_zero_fast(start, env, expect):
    app = start(env=env, ready=False)
    code, took, logs = exits_within(app.container, 15)
    assert code != 0 and took < 15
    assert expect.lower() in logs.lower()


def test_missing_secret_key_stops_with_one_line(start):
    app = start(env={"DJANGO_SECRET_KEY": None}, ready=False)
    code, _, logs = exits_within(app.container, 15)
    assert code != 0
    assert logs == "error: DJANGO_SECRET_KEY is not set; set it (or DJANGO_SECRET_KEY_FILE) in the environment\n"


def test_invalid_values_are_named_never_printed(start):
    app = start(env={"DJANGO_SECRET_KEY": "tooshort-hunter2", "DATABASE_URL": ""}, ready=False)
    code, _, logs = exits_within(app.container, 15)
    assert code != 0 and "DJANGO_SECRET_KEY is too weak" in logs and "hunter2" not in logs
    assert logs.count("\n") == 1 and "Traceback" not in logs


def test_secret_key_file_works_and_both_is_an_error(start, tmp_path):
    key = tmp_path / "key"
    key.write_text("f" * 30 + "0123456789abcdefghijklmnop")
    key.chmod(0o644)
    mount = {str(key): {"bind": "/run/secrets/django_key", "mode": "ro"}}
    app = start(env={"DJANGO_SECRET_KEY": None, "DJANGO_SECRET_KEY_FILE": "/run/secrets/django_key"}, volumes=mount)
    assert get(app.port, "/")[0] == 200
    bad = start(env={"DJANGO_SECRET_KEY_FILE": "/run/secrets/django_key"}, volumes=mount, ready=False)
    code, _, logs = exits_within(bad.container, 15)
    assert code != 0
    assert logs == "error: DJANGO_SECRET_KEY and DJANGO_SECRET_KEY_FILE are both set; set only one of them\n"


def harakiri_run(start, env):
    app = start(env={"DJANGO_TEST_ENDPOINTS": "on", "UWSGI_HARAKIRI": "2", "UWSGI_HTTP_TIMEOUT": "4", **env})
    thread, result = slow_request(app, 8)
    statuses = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # steady traffic from others while the stuck request runs
        statuses.append(get(app.port, "/health/")[0])
    thread.join(15)
    return app, result, statuses


def test_harakiri_kills_a_stuck_request_without_failing_others(start):
    app, result, statuses = harakiri_run(start, {})
    assert "response" not in result  # killed after 2 s: the client is disconnected, never served
    assert len(statuses) > 20 and set(statuses) == {200}
    assert "HARAKIRI ON WORKER" in app.logs()
    assert get(app.port, "/health/")[0] == 200


def test_harakiri_with_threads_is_defeated_by_other_requests(start):
    """Control for the UWSGI_THREADS=1 default: with threads, uWSGI 2.0's per-worker harakiri timer is cleared by
    the other requests, and the stuck request runs to completion."""
    app, result, statuses = harakiri_run(start, {"UWSGI_THREADS": "4", "UWSGI_HTTP_TIMEOUT": "30"})
    assert result.get("response", (None,))[0] == 200 and "HARAKIRI ON WORKER" not in app.logs()


def test_workers_recycle_after_max_requests_without_failures(start):
    # min-worker-lifetime (default 10 s) keeps young workers from recycling; 1 s makes the test quick
    app = start(env={"UWSGI_MAX_REQUESTS": "10", "UWSGI_MAX_REQUESTS_DELTA": "0", "UWSGI_MIN_WORKER_LIFETIME": "1"})
    statuses = []
    deadline = time.monotonic() + 30
    while "The work of process" not in app.logs() and time.monotonic() < deadline:
        statuses.extend(get(app.port, "/")[0] for _ in range(10))
    statuses.extend(get(app.port, "/")[0] for _ in range(30))
    assert "The work of process" in app.logs()
    assert set(statuses) == {200}
