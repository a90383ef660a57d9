"""`inv prune` on every node of the Swarm: one short-lived global job whose task on each node prunes that node.

How the nodes are reached: the toolkit only ever talks to the manager (SSH); workers may not be reachable
from the laptop at all, and their engines never listen on TCP. A Swarm already knows how to run something on
every node, so the manager creates ONE service in mode ``global-job`` (Docker >= 20.10): a task per ready
node, each with that node's /var/run/docker.sock mounted, running ``python3`` of the image the app runs now
(already pulled on the app's nodes and pullable everywhere with the deploy's registry login; a kept release,
so never itself a prune candidate). The script (SCRIPT, stdlib only) speaks the Engine API on the socket:
  - removes the stack's stopped (exited/dead) task containers: nothing running, nothing about to start;
  - for images of the app's repository: removes an image only if one of its references (tag or digest) is a
    release this environment deployed that is no rollback target, none of its tags is anything else, its
    digest is neither kept nor used by any service of the swarm, and no remaining container uses it. An image
    that also carries another tag (a kept release built identically, another environment's tag) only loses
    the old tags; references of other repositories (a laptop's build tag) stay, and a parent of another image
    (the classic builder's intermediate) stays too, so such an image is only untagged. ``DELETE /images``
    without force also refuses anything in use;
  - prints one line ``DJDEPLOY-PRUNE {json}`` (node, images, containers, the node's layer storage before and
    after from /system/df), collected by ``docker service logs --raw``.
The job is removed whatever happens. Nodes that are down or drained get no task and are named as not pruned.
A node's image is only a cache: a rollback pulls a missing kept release from the registry again.
Alternatives not taken: SSH to every node (extra keys and reachability the deploy does not need) and one
replicated job per node (N services where one does).
"""

from __future__ import annotations

import json
import time

from deploy.core.errors import ToolkitError

MARKER = "DJDEPLOY-PRUNE "
SOCKET = "/var/run/docker.sock"
DONE = ("Complete", "Failed", "Rejected", "Shutdown", "Orphaned")
SCRIPT = r'''
import http.client, json, socket, sys, urllib.parse
P = json.loads(sys.argv[1])
class Conn(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(P["socket"])
def api(method, path, query=None):
    conn = Conn("docker", timeout=300)
    conn.request(method, path + ("?" + urllib.parse.urlencode(query) if query else ""))
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, (json.loads(body) if body.strip() else None)
def refs(img, key, sep):
    return {r.rpartition(sep)[2] for r in img.get(key) or [] if r.rpartition(sep)[0] == P["repo"]}
def decide(img, busy):
    tags, digests = refs(img, "RepoTags", ":"), refs(img, "RepoDigests", "@")
    if not (tags & set(P["remove_tags"]) or digests & set(P["remove_digests"])):
        return None
    if tags - set(P["remove_tags"]):  # the image stays for its other tags: only the old names go
        return "untag" if tags & set(P["remove_tags"]) else "kept"
    if digests & set(P["keep_digests"]) or img["Id"] in busy:
        return "kept"
    return "untag" if img["Id"] in parents else "remove"  # a parent of another image stays, untagged
name = api("GET", "/info")[1]["Name"]
before = api("GET", "/system/df")[1]["LayersSize"]
labels = {"label": ["com.docker.stack.namespace=" + P["stack"]], "status": ["exited", "dead"]}
stopped = api("GET", "/containers/json", {"all": "1", "filters": json.dumps(labels)})[1]
gone = {c["Id"] for c in stopped}
busy = {c["ImageID"] for c in api("GET", "/containers/json", {"all": "1"})[1] if c["Id"] not in gone}
images = api("GET", "/images/json")[1]
parents = {i.get("ParentId") for i in images} - {"", None}
result = {"node": name, "containers": len(stopped), "images": [], "before": before, "after": before}
for c in stopped if not P["dry_run"] else []:
    api("DELETE", "/containers/" + c["Id"])
for img in images:
    verdict = decide(img, busy)
    if verdict is None:
        continue
    ours = sorted(t for t in img.get("RepoTags") or [] if t.rpartition(":")[0] == P["repo"])
    ours += sorted(d for d in img.get("RepoDigests") or [] if d.rpartition("@")[0] == P["repo"])
    if verdict == "untag" and refs(img, "RepoTags", ":") - set(P["remove_tags"]):
        ours = [t for t in ours if t.rpartition(":")[2] in P["remove_tags"]]
    if verdict in ("remove", "untag") and not P["dry_run"]:
        codes = [api("DELETE", "/images/" + r)[0] for r in ours]
        still = api("GET", "/images/" + img["Id"] + "/json")[0] != 404
        verdict = "kept" if 409 in codes else "untagged" if still else "removed"
    result["images"].append([ours[0] if ours else img["Id"], img["Size"], verdict])
if not P["dry_run"]:
    result["after"] = api("GET", "/system/df")[1]["LayersSize"]
print("DJDEPLOY-PRUNE " + json.dumps(result), flush=True)
'''


def job_name(cfg) -> str:
    return f"{cfg.stack_name}_prune"


def payload(cfg, remove_tags, remove_digests, keep_digests, dry_run: bool) -> str:
    return json.dumps({"repo": cfg.repository, "stack": cfg.stack_name, "socket": SOCKET, "dry_run": dry_run,
                       "remove_tags": sorted(remove_tags), "remove_digests": sorted(remove_digests),
                       "keep_digests": sorted(keep_digests)}, separators=(",", ":"))


def create_cmd(cfg, image: str, data: str) -> list:
    """The global job (one task per ready node; no retry: a failed node is reported, not run again)."""
    from deploy.ship import swarm

    return ["docker", "--config", swarm.paths(cfg).docker_config, "service", "create", "--detach", "--quiet",
            "--name", job_name(cfg), "--mode", "global-job", "--restart-condition", "none", "--with-registry-auth",
            "--label", f"djdeploy.stack={cfg.stack_name}", "--label", "djdeploy.role=prune",
            "--container-label", f"djdeploy.stack={cfg.stack_name}", "--container-label", "djdeploy.role=prune",
            "--user", "0:0", "--mount", f"type=bind,source={SOCKET},target={SOCKET}",
            "--entrypoint", "python3", image, "-c", SCRIPT, data]


def tasks_cmd(cfg) -> list:
    return ["docker", "service", "ps", "--no-trunc", "--format", "{{.Node}}\t{{.CurrentState}}\t{{.Error}}",
            job_name(cfg)]


def logs_cmd(cfg) -> list:
    return ["docker", "service", "logs", "--raw", "--no-trunc", job_name(cfg)]


def rm_cmd(cfg) -> list:
    return ["docker", "service", "rm", job_name(cfg)]


def nodes_cmd() -> list:
    return ["docker", "node", "ls", "--format", "{{.Hostname}}\t{{.Status}}\t{{.Availability}}"]


def finished(tasks_text: str) -> bool:
    rows = [line.split("\t") for line in tasks_text.splitlines() if line.strip()]
    return bool(rows) and all(r[1].startswith(DONE) for r in rows if len(r) > 1)


def parse_results(logs: str) -> list:
    return [json.loads(line[len(MARKER):]) for line in logs.splitlines() if line.startswith(MARKER)]


def human(n: float) -> str:
    """Bytes as the docker CLI shows them (decimal units)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def run_job(cfg, run, image: str, data: str, timeout: float, sleep=time.sleep, clock=time.monotonic) -> tuple:
    """Create the job, wait until every task ended, collect the lines; the job is removed whatever happens.
    Returns (results, tasks text, nodes text)."""
    t = cfg.command_timeout
    run.run(rm_cmd(cfg), hide=True, check=False, timeout=t)  # a leftover of an interrupted prune (under the lock)
    try:
        run.run(create_cmd(cfg, image, data), hide=True, timeout=t)
        deadline = clock() + timeout
        while True:
            tasks = run.run(tasks_cmd(cfg), hide=True, check=False, timeout=t).stdout
            if finished(tasks):
                break
            if clock() > deadline:
                raise ToolkitError(f"the prune job {job_name(cfg)} did not finish on every node within {timeout:g}s "
                                   f"(tasks: {' | '.join(tasks.split(chr(10))[:6]) or 'none'}); nothing more was "
                                   f"removed. Check `docker service ps {job_name(cfg)}` on the manager")
            sleep(1)
        results = []
        while clock() <= deadline:  # a remote node's log lines can arrive a moment after its task completed
            results = parse_results(run.run(logs_cmd(cfg), hide=True, check=False, timeout=t).stdout)
            if len(results) >= sum(1 for line in tasks.splitlines() if "\tComplete" in line):
                break
            sleep(1)
        nodes = run.run(nodes_cmd(), hide=True, check=False, timeout=t).stdout
        return results, tasks, nodes
    finally:
        run.run(rm_cmd(cfg), hide=True, check=False, timeout=t)


def report(results: list, tasks: str, nodes: str, dry_run: bool, out) -> int:
    """Per node: what was (or would be) removed and the layer storage freed. Returns the nodes pruned."""
    verb = "would remove" if dry_run else "removed"
    words = {"remove": "would remove", "removed": "removed", "untag": "would untag", "untagged": "untagged",
             "kept": "kept"}
    for r in sorted(results, key=lambda r: r["node"]):
        images = sorted(r["images"], key=lambda i: (i[2] == "kept", i[0]))
        gone = sum(1 for i in images if i[2] in ("remove", "removed"))
        untag = sum(1 for i in images if i[2] in ("untag", "untagged"))
        freed = "" if dry_run else (f", freed {human(r['before'] - r['after'])} "
                                    f"(layers {human(r['before'])} -> {human(r['after'])})")
        out.write(f"node {r['node']}: {verb} {gone} image(s) and {untag} tag(s), {r['containers']} stopped task "
                  f"container(s){freed}\n")
        for ref, size, verdict in images:
            why = " (in use, or the digest of a kept release)" if verdict == "kept" else ""
            out.write(f"  {words[verdict]} {ref} ({human(size)}){why}\n")
    for line in tasks.splitlines():
        node, _, rest = line.partition("\t")
        state, _, error = rest.partition("\t")
        if not state.startswith("Complete"):
            out.write(f"node {node}: not pruned ({state.split(' ')[0]}{': ' + error if error else ''})\n")
    for line in nodes.splitlines():
        host, status, avail = (line.split("\t") + ["", ""])[:3]
        if host and (status != "Ready" or avail != "Active"):
            out.write(f"node {host}: not pruned (the node is {status.lower()}, {avail.lower()})\n")
    return len(results)
