"""A task that vanishes mid-request, as when its node crashes (no FIN, no RST: here the task's container is cut off
the network), behind the stack's HAProxy (haproxy:3.0-trixie with deploy/ship/proxy/haproxy.cfg, whose defaults and
app servers the unit tests keep equal to the rendered config): TCP keepalives and the 3 s TCP user timeout end the
dead connection, a GET is then retried on another task, a POST fails fast with a 502 (never replayed), and a live
request slower than those 3 s is not cut. Without the tuning the GET would wait for the 60 s server timeout.

The three tasks are a few lines of Python in the app image (the slow answer on demand is the point)."""

from __future__ import annotations

import http.client
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import LABEL, free_port, wait_for
from .test_logs import HAPROXY_IMAGE, haproxy_cfg

pytestmark = pytest.mark.engine

# /health/ answers at once; /slow/<s>[/<t0>] logs "got <METHOD> <path>", waits s seconds (only if it arrives within
# 1.5 s of the time t0: the first try of a crash request is held, its retry on another task answers at once), then
# answers the task's name.
TASK = r"""
import http.server, os, sys, time
class H(http.server.BaseHTTPRequestHandler):
    def answer(self):
        if self.path.startswith("/slow/"):
            print("got", self.command, self.path, flush=True)
            parts = self.path.split("/")
            if len(parts) < 4 or time.time() - float(parts[3]) < 1.5:
                time.sleep(float(parts[2]))
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = os.environ["NAME"].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = answer
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8000), H).serve_forever()
"""


def send(port: int, method: str, path: str, timeout: float = 15.0) -> tuple[int, str, float]:
    """(status or 0 for no answer, body, seconds) of one request through the proxy."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=b"x=1" if method == "POST" else None, headers={"Host": "localhost"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(), time.monotonic() - started
    except OSError as exc:
        return 0, type(exc).__name__, time.monotonic() - started
    finally:
        conn.close()


@pytest.fixture
def cluster(docker_client, built_image, network, request):
    """(tasks by name, proxy port): three fake tasks of the service `app` and the stack's proxy in front of them."""
    made = []

    def run(image, **kw):
        made.append(docker_client.containers.run(image, detach=True, labels=LABEL, **kw))
        return made[-1]

    tasks = {}
    for name in ("a", "b", "c"):
        tasks[name] = run(built_image.ref, name=f"djimage-task-{name}-{uuid.uuid4().hex[:6]}", entrypoint=["python"],
                          command=["-c", TASK], environment={"NAME": name}, user="nobody")
        network.connect(tasks[name], aliases=["tasks.app"])
    port = free_port()
    run(HAPROXY_IMAGE, name=f"djimage-proxy-{uuid.uuid4().hex[:8]}", network=network.name,
        environment={"APP_SERVICE": "app", "APP_SLOTS": "3", "HEALTH_HOST": "localhost"},
        volumes={str(haproxy_cfg()): {"bind": "/usr/local/etc/haproxy/haproxy.cfg", "mode": "ro"}},
        ports={"8080/tcp": ("127.0.0.1", port)})
    # round robin over servers that passed a check: all three answer within a few requests
    seen = set()
    wait_for("all three tasks UP behind the proxy",
             lambda: seen.add(send(port, "GET", "/slow/0", timeout=2)[1]) or seen >= set(tasks), 30, 0.1)
    yield tasks, port
    for c in made:
        if getattr(getattr(request.node, "rep_call", None), "failed", False):
            print(f"--- logs of {c.name} ---\n{c.logs().decode('utf-8', 'replace')[-3000:]}")
        c.remove(force=True)


def crash_the_task_that_got(tasks, network, pool, port, method):
    """Send ``method`` of a request its first task holds 30 s, cut that task off the network once the request has
    arrived there; (answer, victim)."""
    before = {n: t.logs().count(b"got ") for n, t in tasks.items()}
    pending = pool.submit(send, port, method, f"/slow/30/{time.time():.3f}")
    victim = wait_for(f"the {method} to reach a task", lambda: next(
        (n for n, t in tasks.items() if t.logs().count(b"got ") > before[n]), None), 10, 0.05)
    network.disconnect(tasks[victim], force=True)
    return pending.result(), victim


def test_a_get_in_flight_to_a_vanished_task_is_retried_and_a_post_fails_fast(cluster, network):
    tasks, port = cluster
    with ThreadPoolExecutor(4) as pool:
        # live requests slower than the 3 s that find a dead peer keep going (60 s server timeout)
        slow = [pool.submit(send, port, m, "/slow/5") for m in ("GET", "POST")]
        assert [f.result()[0] for f in slow] == [200, 200], [f.result() for f in slow]
        (status, body, seconds), victim = crash_the_task_that_got(tasks, network, pool, port, "POST")
        assert status == 502 and 2.5 < seconds < 8, (status, body, seconds)  # not replayed, not 60 s
        (status, body, seconds), cut = crash_the_task_that_got(tasks, network, pool, port, "GET")
        assert status == 200 and body not in (victim, cut), (status, body, seconds)  # answered by the last task
        assert 2.5 < seconds < 10, seconds  # 3 s to find the dead connection, then the retry: < the client's 10 s
    print(f"GET retried on task {body} {seconds:.1f}s after it reached task {cut}")
