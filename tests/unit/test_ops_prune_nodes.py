"""deploy.ops.prune_nodes: the global job's exact commands, the wait and its timeout message, the per-node report,
and the node script itself run against a stand-in Engine API on a unix socket (which DELETEs it sends)."""

import io
import json
import os
import socketserver
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler

import pytest
from invoke import Result

from deploy.core.errors import ToolkitError
from deploy.core.runner import Runner
from deploy.ops import prune_nodes
from shipfakes import FakeManager, make_cfg

REPO = "127.0.0.1:5000/djapp"


@pytest.fixture
def cfg(tmp_path):
    return make_cfg(tmp_path)


def test_the_job_is_one_global_job_with_the_nodes_socket_and_the_deploys_login(cfg):
    data = prune_nodes.payload(cfg, {"t2", "t1"}, {"sha256:b"}, {"sha256:k"}, False)
    assert json.loads(data) == {"repo": REPO, "stack": "djt", "socket": "/var/run/docker.sock", "dry_run": False,
                                "remove_tags": ["t1", "t2"], "remove_digests": ["sha256:b"], "keep_digests": ["sha256:k"]}
    assert prune_nodes.create_cmd(cfg, f"{REPO}:v5@sha256:k", data) == [
        "docker", "--config", "/var/lib/djdeploy/djt/docker", "service", "create", "--detach", "--quiet",
        "--name", "djt_prune", "--mode", "global-job", "--restart-condition", "none", "--with-registry-auth",
        "--label", "djdeploy.stack=djt", "--label", "djdeploy.role=prune",
        "--container-label", "djdeploy.stack=djt", "--container-label", "djdeploy.role=prune",
        "--user", "0:0", "--mount", "type=bind,source=/var/run/docker.sock,target=/var/run/docker.sock",
        "--entrypoint", "python3", f"{REPO}:v5@sha256:k", "-c", prune_nodes.SCRIPT, data]
    assert prune_nodes.tasks_cmd(cfg) == ["docker", "service", "ps", "--no-trunc", "--format",
                                          "{{.Node}}\t{{.CurrentState}}\t{{.Error}}", "djt_prune"]
    assert prune_nodes.logs_cmd(cfg) == ["docker", "service", "logs", "--raw", "--no-trunc", "djt_prune"]
    assert prune_nodes.rm_cmd(cfg) == ["docker", "service", "rm", "djt_prune"]
    assert prune_nodes.nodes_cmd() == ["docker", "node", "ls", "--format",
                                       "{{.Hostname}}\t{{.Status}}\t{{.Availability}}"]


def test_finished_only_when_every_task_ended():
    assert not prune_nodes.finished("")
    assert not prune_nodes.finished("n1\tComplete 1 second ago\t\nn2\tRunning 2 seconds ago\t\n")
    assert prune_nodes.finished("n1\tComplete 1 second ago\t\nn2\tRejected 1 second ago\tNo such image\n")


LINE = 'DJDEPLOY-PRUNE {"node": "%s", "containers": 2, "images": [["%s:v2", 149000000, "removed"], ' \
       '["%s:v3", 151000000, "kept"]], "before": 3000000000, "after": 2851000000}\n'


def manager(tasks, logs):
    return FakeManager([("service ps", Result(stdout=tasks)), ("service logs", Result(stdout=logs)),
                        ("node ls", Result(stdout="n1\tReady\tActive\nn2\tReady\tActive\nn3\tDown\tActive\n"))])


def test_run_job_waits_collects_every_nodes_line_and_always_removes_the_job(cfg):
    tasks = "n1\tComplete 1 second ago\t\nn2\tComplete 1 second ago\t\n"
    m = manager(tasks, LINE % ("n1", REPO, REPO) + "noise\n" + LINE % ("n2", REPO, REPO))
    results, got, nodes = prune_nodes.run_job(cfg, Runner(ctx=m, where="m", out=io.StringIO()), "img", "{}", 60,
                                              sleep=lambda s: None)
    assert [r["node"] for r in results] == ["n1", "n2"] and got == tasks
    cmds = m.commands()
    assert cmds[0] == "docker service rm djt_prune" and cmds[-1] == "docker service rm djt_prune"
    assert cmds[1].startswith("docker --config /var/lib/djdeploy/djt/docker service create --detach --quiet")
    out = io.StringIO()
    assert prune_nodes.report(results, got + "n4\tRejected 1 second ago\tNo such image: img\n", nodes, False, out) == 2
    assert out.getvalue().splitlines() == [
        "node n1: removed 1 image(s) and 0 tag(s), 2 stopped task container(s), freed 149.0 MB (layers 3.0 GB -> 2.9 GB)",
        f"  removed {REPO}:v2 (149.0 MB)", f"  kept {REPO}:v3 (151.0 MB) (in use, or the digest of a kept release)",
        "node n2: removed 1 image(s) and 0 tag(s), 2 stopped task container(s), freed 149.0 MB (layers 3.0 GB -> 2.9 GB)",
        f"  removed {REPO}:v2 (149.0 MB)", f"  kept {REPO}:v3 (151.0 MB) (in use, or the digest of a kept release)",
        "node n4: not pruned (Rejected: No such image: img)",
        "node n3: not pruned (the node is down, active)"]


def test_a_job_that_does_not_finish_is_a_one_line_error_and_is_removed(cfg):
    m = manager("n1\tRunning 1 second ago\t\n", "")
    clock = iter(range(0, 1000, 30))
    with pytest.raises(ToolkitError) as err:
        prune_nodes.run_job(cfg, Runner(ctx=m, where="m", out=io.StringIO()), "img", "{}", 60,
                            sleep=lambda s: None, clock=lambda: next(clock))
    assert str(err.value) == ("the prune job djt_prune did not finish on every node within 60s (tasks: n1\tRunning 1 "
                              "second ago\t | ); nothing more was removed. Check `docker service ps djt_prune` on "
                              "the manager")
    assert m.commands()[-1] == "docker service rm djt_prune"


def test_human_sizes():
    assert [prune_nodes.human(n) for n in (999, 1000, 149_300_000, 3_084_587_520, -2_000)] == [
        "999 B", "1.0 kB", "149.3 MB", "3.1 GB", "-2.0 kB"]


# ---- the node script against a stand-in Engine API -------------------------------------------------------

IMAGES = [
    {"Id": "sha256:i2", "RepoTags": [f"{REPO}:djt-v2"], "RepoDigests": [f"{REPO}@sha256:d2"], "Size": 100},
    {"Id": "sha256:i3", "RepoTags": [], "RepoDigests": [f"{REPO}@sha256:d3"], "Size": 200},  # pulled by digest
    {"Id": "sha256:i4", "RepoTags": [f"{REPO}:djt-v4", f"{REPO}:other-h1"], "RepoDigests": [], "Size": 300},
    {"Id": "sha256:i5", "RepoTags": [f"{REPO}:djt-v5"], "RepoDigests": [f"{REPO}@sha256:d5"], "Size": 400},  # kept
    {"Id": "sha256:i6", "RepoTags": [f"{REPO}:djt-v6", "djapp:djt-v6"], "RepoDigests": [], "Size": 500},
    {"Id": "sha256:i7", "RepoTags": [f"{REPO}:djt-v7"], "RepoDigests": [], "Size": 600},  # a running container's
    {"Id": "sha256:x", "RepoTags": ["127.0.0.1:5000/djedge:djt-v2"], "RepoDigests": [], "Size": 700},
    {"Id": "sha256:i3p", "RepoTags": [f"{REPO}:djt-v3"], "RepoDigests": [], "Size": 800},  # the parent of i5
]
IMAGES[3]["ParentId"] = "sha256:i3p"
CONTAINERS = [{"Id": "c-run", "ImageID": "sha256:i7"}, {"Id": "c-old", "ImageID": "sha256:i2"}]


class Engine(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path):
        self.calls, self.images = [], {i["Id"]: dict(i) for i in IMAGES}
        super().__init__(path, self._handler())

    def _handler(self):
        eng = self

        class H(BaseHTTPRequestHandler):
            def address_string(self):
                return "unix"

            def log_message(self, *a):
                pass

            def _json(self, code, doc):
                body = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                eng.calls.append(("GET", self.path))
                path = self.path.partition("?")[0]
                if path == "/info":
                    return self._json(200, {"Name": "node-a"})
                if path == "/system/df":
                    return self._json(200, {"LayersSize": 1000 + sum(i["Size"] for i in eng.images.values())})
                if path == "/containers/json":
                    stopped = "exited" in self.path
                    return self._json(200, [CONTAINERS[1]] if stopped else CONTAINERS)
                if path == "/images/json":
                    return self._json(200, list(eng.images.values()))
                image = path[len("/images/"):-len("/json")]
                return self._json(200 if image in eng.images else 404, {})

            def do_DELETE(self):
                eng.calls.append(("DELETE", self.path))
                ref = self.path[len("/images/"):]
                for img in eng.images.values():
                    img["RepoTags"] = [t for t in img["RepoTags"] if t != ref]
                    img["RepoDigests"] = [d for d in img["RepoDigests"] if d != ref]
                parents = {i.get("ParentId") for i in eng.images.values()}
                eng.images = {k: v for k, v in eng.images.items() if v["RepoTags"] or v["RepoDigests"] or k in parents}
                return self._json(200, [])

        return H


def run_script(tmp_path, cfg, dry_run):
    sock = str(tmp_path / "docker.sock")
    eng = Engine(sock)
    threading.Thread(target=eng.serve_forever, daemon=True).start()
    try:
        data = json.loads(prune_nodes.payload(cfg, {"djt-v2", "djt-v3", "djt-v4", "djt-v6", "djt-v7"}, {"sha256:d3"},
                                              {"sha256:d5"}, dry_run))
        data["socket"] = sock
        out = subprocess.run([sys.executable, "-c", prune_nodes.SCRIPT, json.dumps(data)], capture_output=True,
                             text=True, timeout=30, env={**os.environ, "PYTHONPATH": ""})
    finally:
        eng.shutdown()
        eng.server_close()
    assert out.returncode == 0, out.stderr
    return prune_nodes.parse_results(out.stdout), eng


def test_the_node_script_removes_only_unused_candidates_of_the_repository(tmp_path, cfg):
    (result,), eng = run_script(tmp_path, cfg, dry_run=False)
    assert [c for c in eng.calls if c[0] == "DELETE"] == [
        ("DELETE", "/containers/c-old"), ("DELETE", f"/images/{REPO}:djt-v2"), ("DELETE", f"/images/{REPO}@sha256:d2"),
        ("DELETE", f"/images/{REPO}@sha256:d3"), ("DELETE", f"/images/{REPO}:djt-v4"),
        ("DELETE", f"/images/{REPO}:djt-v6"), ("DELETE", f"/images/{REPO}:djt-v3")]
    assert result == {"node": "node-a", "containers": 1, "before": 4600, "after": 4300, "images": [
        [f"{REPO}:djt-v2", 100, "removed"], [f"{REPO}@sha256:d3", 200, "removed"],
        [f"{REPO}:djt-v4", 300, "untagged"], [f"{REPO}:djt-v6", 500, "untagged"], [f"{REPO}:djt-v7", 600, "kept"],
        [f"{REPO}:djt-v3", 800, "untagged"]]}
    assert eng.images["sha256:i3p"]["RepoTags"] == []  # still there for its child, untagged
    assert eng.images["sha256:i4"]["RepoTags"] == [f"{REPO}:other-h1"]  # another environment's tag stays
    assert "sha256:i5" in eng.images and "sha256:x" in eng.images


def test_the_node_script_dry_run_sends_no_delete(tmp_path, cfg):
    (result,), eng = run_script(tmp_path, cfg, dry_run=True)
    assert not [c for c in eng.calls if c[0] == "DELETE"]
    assert [i[2] for i in result["images"]] == ["remove", "remove", "untag", "remove", "kept", "untag"]
    assert (result["before"], result["after"], result["containers"]) == (4600, 4600, 1)
