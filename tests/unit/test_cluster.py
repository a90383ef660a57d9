"""Lab cluster: the pure parts (node run argv, join plan, subnet choice, validation, every error text)."""

import shutil
import subprocess

import pytest

from deploy.core.errors import ToolkitError
from deploy.lab import cluster_plan as plan
from deploy.lab.cluster_plan import ClusterSpec

SUBNET = "172.30.200.0/24"
NESTED = [
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--security-opt", "systempaths=unconfined",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run:exec,mode=0755", "--tmpfs", "/tmp:exec,mode=1777",
]


def test_node1_run_argv_is_the_nested_engine_recipe_with_ssh_app_and_https_ports():
    argv = plan.run_argv(ClusterSpec(), 1, "djlab-node:abc", SUBNET, "/lab/cluster/djlab/nodes/1")
    config = plan.config_of(argv)
    assert len(config) == 12
    assert argv == [
        "docker", "run", "-d", "--name", "djlab-node1",
        "--label", "djdeploy.lab=cluster", "--label", "djdeploy.lab.cluster=djlab",
        "--label", "djdeploy.lab.node=1", "--label", f"djdeploy.lab.config={config}",
        "--hostname", "djlab-node1", "--network", "djlab-net", "--ip", "172.30.200.11",
        *NESTED,
        "-v", "djlab-node1-docker:/var/lib/docker",
        "-v", "/lab/cluster/djlab/nodes/1:/etc/ssh/lab:ro",
        "-e", "NODE_CGROUP_PARENT=/djlab-node1",
        "-e", "REGISTRY_UPSTREAM=172.30.200.1:5000",
        "-p", "127.0.0.1:18001:8080",
        "-p", "127.0.0.1:18441:8443",
        "-p", "127.0.0.1:2223:22",
        "djlab-node:abc",
    ]
    assert "--privileged" not in argv  # fails on this kernel (LAB.md)


def test_worker_run_argv_publishes_only_its_app_and_https_ports():
    spec = ClusterSpec(name="djtest", app_port_base=21000, node_app_port=80, https_port_base=21010,
                       node_https_port=443)
    argv = plan.run_argv(spec, 3, "img", SUBNET, "/d")
    ports = [argv[k + 1] for k, a in enumerate(argv) if a == "-p"]
    assert ports == ["127.0.0.1:21003:80", "127.0.0.1:21013:443"]
    assert (spec.https_port(3), spec.host_name) == (21013, "djtest-cluster.test")
    assert "NODE_CGROUP_PARENT=/djtest-node3" in argv and "172.30.200.13" in argv


def test_config_label_changes_with_image_or_settings_only():
    a = plan.run_argv(ClusterSpec(), 2, "img:1", SUBNET, "/d")
    assert plan.config_of(a) == plan.config_of(plan.run_argv(ClusterSpec(), 2, "img:1", SUBNET, "/d"))
    assert plan.config_of(a) != plan.config_of(plan.run_argv(ClusterSpec(), 2, "img:2", SUBNET, "/d"))
    assert plan.config_of(a) != plan.config_of(plan.run_argv(ClusterSpec(ssh_port=2224), 1, "img:1", SUBNET, "/d"))


def test_network_and_volume_argv():
    spec = ClusterSpec()
    assert plan.network_create_argv(spec, SUBNET) == [
        "docker", "network", "create", "--driver", "bridge", "--subnet", SUBNET, "--gateway", "172.30.200.1",
        "--label", "djdeploy.lab=cluster", "--label", "djdeploy.lab.cluster=djlab", "djlab-net"]
    assert plan.volume_create_argv(spec, 2) == [
        "docker", "volume", "create", "--label", "djdeploy.lab=cluster", "--label", "djdeploy.lab.cluster=djlab",
        "--label", "djdeploy.lab.node=2", "djlab-node2-docker"]


def test_swarm_init_advertises_node1_network_address():
    assert plan.swarm_init_argv(ClusterSpec(), SUBNET) == [
        "docker", "exec", "djlab-node1", "docker", "swarm", "init",
        "--advertise-addr", "172.30.200.11", "--listen-addr", "172.30.200.11:2377"]


def test_join_plan_skips_manager_and_joined_nodes_and_keeps_token_out_of_argv():
    steps = plan.join_plan(ClusterSpec(nodes=4), SUBNET, joined={1, 3})
    script = 'IFS= read -r token && exec docker swarm join --token "$token" --advertise-addr "$1" "$2"'
    assert steps == [
        (2, ["docker", "exec", "-i", "djlab-node2", "sh", "-c", script, "sh", "172.30.200.12", "172.30.200.11:2377"]),
        (4, ["docker", "exec", "-i", "djlab-node4", "sh", "-c", script, "sh", "172.30.200.14", "172.30.200.11:2377"]),
    ]
    assert plan.join_plan(ClusterSpec(), SUBNET, joined={1, 2, 3}) == []


def test_join_script_reads_the_token_from_stdin():
    sh = shutil.which("sh")
    script = plan.join_plan(ClusterSpec(), SUBNET, set())[0][1][6].replace("exec docker swarm join", "echo")
    out = subprocess.run([sh, "-c", script, "sh", "10.0.0.2", "10.0.0.1:2377"], input="SWMTKN-x\n",
                         capture_output=True, text=True, check=True).stdout
    assert out == "--token SWMTKN-x --advertise-addr 10.0.0.2 10.0.0.1:2377\n"


def test_node_ls_and_swarm_state_queries():
    assert plan.node_ls_argv(ClusterSpec()) == [
        "docker", "exec", "djlab-node1", "docker", "node", "ls", "--format",
        "{{.Hostname}}\t{{.ManagerStatus}}\t{{.Availability}}\t{{.Status}}"]
    assert plan.swarm_state_argv(ClusterSpec(), 2)[:4] == ["docker", "exec", "djlab-node2", "docker"]


def test_choose_subnet_skips_overlapping_networks_and_routes():
    used = ["172.17.0.0/16", "172.30.200.0/24", "172.30.201.128/25", "garbage", "fe80::/64"]
    assert plan.choose_subnet(used) == "172.30.202.0/24"
    assert plan.choose_subnet([]) == "172.30.200.0/24"


def test_choose_subnet_error_names_the_fix():
    with pytest.raises(ToolkitError) as err:
        plan.choose_subnet(["172.30.0.0/16"])
    assert str(err.value) == ("no free subnet for the lab cluster network among 172.30.200.0/24..172.30.249.0/24; "
                              "remove unused docker networks or pass --subnet")


def test_addresses():
    assert plan.gateway("10.9.8.0/24") == "10.9.8.1"
    assert [plan.node_ip("10.9.8.0/24", i) for i in (1, 2, 3)] == ["10.9.8.11", "10.9.8.12", "10.9.8.13"]
    assert plan.ca_ip("10.9.8.0/24") == "10.9.8.5"


def test_validate_lists_every_problem_together():
    with pytest.raises(ToolkitError) as err:
        plan.validate(ClusterSpec(name="9bad_name", nodes=0, ssh_port=80, subnet="nope"))
    assert str(err.value) == (
        "invalid cluster settings:\n"
        "  - nodes: 0 is out of range; use 1..9\n"
        "  - name: '9bad_name' must start with a letter and hold only letters, digits and '-'\n"
        "  - ssh_port: 80 is not a port in 1024..65535\n"
        "  - subnet: 'nope' is not a network like 172.30.200.0/24\n"
        "fix the flags (see `inv --help cluster.up`)")


def test_validate_port_collision_and_small_subnet():
    with pytest.raises(ToolkitError) as err:
        plan.validate(ClusterSpec(ssh_port=18002, subnet="10.0.0.0/29"))
    assert "  - app port of node 2: 18002 collides with the ssh_port\n" in str(err.value)
    assert "  - subnet: 10.0.0.0/29 must be an IPv4 network with room for the nodes (/27 or larger)\n" in str(err.value)
    plan.validate(ClusterSpec())  # the defaults are valid


def test_validate_https_ports_collide_with_app_ports_and_need_their_own_node_port():
    with pytest.raises(ToolkitError) as err:
        plan.validate(ClusterSpec(https_port_base=18001, node_https_port=8080))
    assert str(err.value) == (
        "invalid cluster settings:\n"
        "  - app port of node 2: 18002 collides with the HTTPS port of node 1\n"
        "  - app port of node 3: 18003 collides with the HTTPS port of node 2\n"
        "  - node_https_port: 8080 is also node_app_port; HTTP and HTTPS need two ports\n"
        "fix the flags (see `inv --help cluster.up`)")
    with pytest.raises(ToolkitError, match="  - HTTPS port of node 3: 65536 is not a port in 1024..65535"):
        plan.validate(ClusterSpec(https_port_base=65533))


def test_node_image_tag_follows_the_content():
    a = plan.node_image_tag({"Dockerfile": b"FROM x", "e.sh": b"1"})
    assert a.startswith("djlab-node:") and len(a) == len("djlab-node:") + 12
    assert a == plan.node_image_tag({"e.sh": b"1", "Dockerfile": b"FROM x"})
    assert a != plan.node_image_tag({"Dockerfile": b"FROM x", "e.sh": b"2"})


def test_known_hosts_line_pins_the_bracketed_loopback_port():
    assert plan.known_hosts_line(2223, "ssh-ed25519 AAAAC3Nz host1\n") == "[127.0.0.1]:2223 ssh-ed25519 AAAAC3Nz\n"


def test_error_texts():
    assert plan.engine_failed("djlab-node2", 60, "level=fatal msg=boom") == (
        "the Docker engine in lab node djlab-node2 did not answer within 60s; its last log lines:\n"
        "level=fatal msg=boom\nfix the cause above, then run `inv cluster.down` and `inv cluster.up` again")
    assert plan.node_exited("djlab-node1", "x") == (
        "lab node djlab-node1 stopped while starting; its last log lines:\nx\n"
        "fix the cause above, then run `inv cluster.down` and `inv cluster.up` again")
    assert plan.port_taken(2223, "SSH of node 1") == (
        "127.0.0.1:2223 (SSH of node 1) is already in use by another program; "
        "free it or pick other ports (see `inv --help cluster.up`)")
    assert plan.lab_missing("the program docker-registry") == (
        "the lab is not provisioned (the program docker-registry is missing); run `inv lab.up --deploy` first")


def test_node_image_is_built_from_the_debian_base_and_lints_clean():
    dockerfile = (plan.NODE_DIR / "Dockerfile").read_text()
    froms = [line for line in dockerfile.splitlines() if line.startswith("FROM")]
    assert froms == ["FROM debian:trixie-slim"]
    assert "# syntax" not in dockerfile
    hadolint = shutil.which("hadolint")
    if hadolint:
        res = subprocess.run([hadolint, "--failure-threshold", "warning", str(plan.NODE_DIR / "Dockerfile")],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr


def test_node_entrypoint_is_strict_and_parses():
    script = plan.NODE_DIR / "node-entrypoint.sh"
    text = script.read_text()
    assert "set -euo pipefail" in text and "wait -n" in text
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_registry_endpoint_reuses_the_lab_config_with_only_the_address_overridden():
    from deploy.lab import cluster_registry, paths

    assert cluster_registry.serve_argv() == ["docker-registry", "serve", str(paths.REGISTRY_DIR / "config.yml")]
    assert cluster_registry.serve_env("172.30.200.1", 5000) == {
        "REGISTRY_HTTP_ADDR": "172.30.200.1:5000", "REGISTRY_LOG_LEVEL": "warn"}


def test_cluster_tasks_have_docstrings_and_help():
    import inspect

    from invoke import Collection

    from deploy.tasks import cluster

    ns = Collection.from_module(cluster)
    assert sorted(ns.task_names) == ["down", "env", "status", "up"]
    for name in ns.task_names:
        t = ns[name]
        assert inspect.getdoc(t.body).splitlines()[0].endswith(".")
        params = [p for p in inspect.signature(t.body).parameters if p != "c"]
        assert all(p in t.help for p in params), name


def test_up_validates_before_any_side_effect(monkeypatch):
    from deploy.lab import cluster

    def boom(*a, **k):
        raise AssertionError("no command may run")

    monkeypatch.setattr(cluster, "_runners", boom)
    with pytest.raises(ToolkitError, match="nodes: 12 is out of range"):
        cluster.up(spec=ClusterSpec(nodes=12))


def test_cluster_env_switches_the_lab_env_to_node1_and_registry_stand_ins(tmp_path, monkeypatch):
    from deploy.ship import config
    from deploy.lab import cluster_env, paths

    spec = ClusterSpec(ssh_port=2223, app_port_base=18000, subnet=SUBNET)
    values = cluster_env.cluster_env_values(spec, stack="djc", replicas=5)
    base = str(paths.LAB_DIR / "cluster" / "djlab")
    assert values == {
        "MANAGER_HOST": "127.0.0.1", "SSH_PORT": "2223", "SSH_KEY": base + "/id_ed25519",
        "KNOWN_HOSTS": base + "/known_hosts", "STACK_NAME": "djc", "REPLICAS": "5", "PUBLISHED_PORT": "8080",
        "HEALTH_URL": "http://127.0.0.1:18001/health/?ready=1",
        "POSTGRES_IMAGE": "127.0.0.1:5000/lab/postgres:17-trixie",
        "PROXY_IMAGE": "127.0.0.1:5000/lab/haproxy:3.0-trixie"}
    monkeypatch.setattr(paths, "LAB_DIR", tmp_path)
    (tmp_path / "cluster" / "djlab").mkdir(parents=True)
    for name in ("id_ed25519", "known_hosts"):
        (tmp_path / "cluster" / "djlab" / name).write_text("x")
    paths_reg = tmp_path / "password"
    paths_reg.write_text("pw")
    monkeypatch.setattr(paths, "REGISTRY_PASSWORD_FILE", paths_reg)
    from deploy.lab import deploy_env

    monkeypatch.setattr(deploy_env, "SECRETS_DIR", tmp_path / "deploy")
    path = cluster_env.write(spec, env_dir=tmp_path, stack="djc", replicas=5, extra={"CONVERGE_TIMEOUT": "90"})
    text = path.read_text()
    assert text.startswith("# The lab cluster djlab (3 nodes) as a deploy environment")
    assert "node 3: 127.0.0.1:18003" in text
    cfg = config.load("cluster", env_dir=tmp_path, environ={})
    assert (cfg.ssh_port, cfg.stack_name, cfg.replicas, cfg.published_port) == (2223, "djc", 5, 8080)
    assert (cfg.publish_mode, cfg.endpoint_mode, cfg.proxy, cfg.converge_timeout) == ("host", "dnsrr", True, 90.0)
    assert cfg.postgres_image == "127.0.0.1:5000/lab/postgres:17-trixie"
    assert cfg.tls_mode == "external"  # without the cluster CA's values: plain HTTP


def test_cluster_acme_is_a_pebble_of_the_cluster_validating_at_node1():
    from deploy.lab import acme, cluster_acme

    spec = ClusterSpec(name="djc", subnet=SUBNET)
    ca = cluster_acme.acme_spec(spec)
    assert ca == acme.AcmeSpec(prefix="djc", labels=(("djdeploy.lab", "cluster"), ("djdeploy.lab.cluster", "djc")),
                               http_port=8080, target_ipv4="172.30.200.11", validity=180,
                               tls_names=("172.30.200.5",))
    assert acme.problems(ca) == []
    assert "PEBBLE_TLS_NAMES=djc-pebble,172.30.200.5" in acme.pebble_argv(ca)
    assert acme.connect_argv(ca, spec.network, "172.30.200.5") == [
        "docker", "network", "connect", "--alias", "pebble", "--ip", "172.30.200.5", "djc-net", "djc-pebble"]


def test_cluster_env_with_the_cluster_ca_serves_https_on_every_node(tmp_path, monkeypatch):
    from deploy.ship import config
    from deploy.lab import cluster_acme, cluster_env, deploy_env, paths

    spec = ClusterSpec(name="djc", ssh_port=2223, app_port_base=18000, https_port_base=18440, subnet=SUBNET)
    monkeypatch.setattr(paths, "LAB_DIR", tmp_path)
    monkeypatch.setattr(deploy_env, "SECRETS_DIR", tmp_path / "deploy")
    monkeypatch.setattr(paths, "REGISTRY_PASSWORD_FILE", tmp_path / "password")
    (tmp_path / "password").write_text("pw")
    ca_dir = tmp_path / "cluster" / "djc" / "acme"
    ca_dir.mkdir(parents=True)
    from test_certs import make_cert

    for name in ("id_ed25519", "known_hosts"):
        (tmp_path / "cluster" / "djc" / name).write_text("x")
    for name in ("api-root.pem", "ca-root.pem"):
        (ca_dir / name).write_bytes(make_cert(("root",))[0])
    tls = cluster_acme.env_values(spec, cluster_acme.files_dir(spec))
    assert tls == {"TLS_MODE": "acme", "ACME_DIRECTORY": "https://172.30.200.5:14000/dir",
                   "ACME_EMAIL": "lab@djdeploy.test", "ACME_CA_ROOT_FILE": str(ca_dir / "api-root.pem"),
                   "HEALTH_CA_FILE": str(ca_dir / "ca-root.pem"), "DJANGO_ALLOWED_HOSTS": "djc-cluster.test",
                   "HEALTH_HOST": "djc-cluster.test", "HTTPS_PORT": "8443", "CERT_SYNC_INTERVAL": "2",
                   "HEALTH_URL": "https://127.0.0.1:18441/health/?ready=1"}
    path = cluster_env.write(spec, env_dir=tmp_path, stack="djc", tls=tls)
    assert "# HTTPS: https://djc-cluster.test/ (node 1: 127.0.0.1:18441, node 2: 127.0.0.1:18442, node 3: " \
           "127.0.0.1:18443;" in path.read_text()
    cfg = config.load("cluster", env_dir=tmp_path, environ={})
    assert (cfg.tls_mode, cfg.published_port, cfg.https_port) == ("acme", 8080, 8443)
    assert (cfg.django_allowed_hosts, cfg.health_host) == ("djc-cluster.test", "djc-cluster.test")
    assert (cfg.health_url, cfg.acme_network) == ("https://127.0.0.1:18441/health/?ready=1", "")


class FakeRunner:
    """Answers by the first matching argv prefix; records every command."""

    def __init__(self, answers):
        self.answers, self.history = answers, []

    def run(self, argv, **kw):
        from deploy.core.runner import Outcome

        self.history.append(argv)
        for prefix, (code, out) in self.answers:
            if argv[:len(prefix)] == prefix:
                return Outcome(command=" ".join(argv), exited=code, stdout=out)
        raise AssertionError(f"unexpected command {argv}")


def test_a_node_whose_engine_dies_is_reported_with_its_last_log_lines():
    from deploy.lab import cluster

    ask = FakeRunner([
        (["docker", "exec", "djlab-node1", "docker", "version"], (0, "26.1.5")),
        (["docker", "exec", "djlab-node2", "docker", "version"], (1, "")),
        (["docker", "inspect", "--format", "{{.State.Running}}", "djlab-node2"], (0, "false\n")),
        (["docker", "logs", "--tail", "15", "djlab-node2"], (0, "level=info msg=start\nfailed to start daemon: x\n")),
    ])
    with pytest.raises(ToolkitError) as err:
        cluster._wait_engines(ask, ClusterSpec(nodes=2))
    assert str(err.value) == (
        "lab node djlab-node2 stopped while starting; its last log lines:\n"
        "level=info msg=start\nfailed to start daemon: x\n"
        "fix the cause above, then run `inv cluster.down` and `inv cluster.up` again")


def test_swarm_is_formed_only_where_missing():
    from deploy.lab import cluster

    spec = ClusterSpec()
    ask = FakeRunner([
        (["docker", "exec", "djlab-node1", "docker", "info"], (0, "active true\n")),
        (["docker", "exec", "djlab-node2", "docker", "info"], (0, "active false\n")),
        (["docker", "exec", "djlab-node3", "docker", "info"], (0, "inactive false\n")),
        (["docker", "exec", "djlab-node1", "docker", "swarm", "join-token"], (0, "SWMTKN-1-secret\n")),
    ])

    class Act(FakeRunner):
        secrets = ()

        def add_secrets(self, *v):
            self.secrets = v

        def run(self, argv, stdin=None, **kw):
            self.stdins.append(stdin)
            return super().run(argv, **kw)

    act = Act([(["docker", "exec", "-i", "djlab-node3"], (0, ""))])
    act.stdins = []
    cluster._form_swarm(act, ask, spec, SUBNET)
    assert act.history == [plan.join_plan(spec, SUBNET, {1, 2})[0][1]]
    assert act.stdins == ["SWMTKN-1-secret\n"] and act.secrets == ("SWMTKN-1-secret",)
    assert all("SWMTKN-1-secret" not in " ".join(a) for a in act.history + ask.history)


def test_down_removes_only_what_carries_the_cluster_label(monkeypatch, tmp_path):
    import json as _json

    from deploy.lab import cluster, cluster_registry, cluster_state, paths

    monkeypatch.setattr(paths, "LAB_DIR", tmp_path)
    (tmp_path / "cluster" / "djlab").mkdir(parents=True)
    inspect = _json.dumps([{"Name": "/djlab-node1", "Config": {"Labels": {plan.CLUSTER_LABEL: "djlab"}}}])
    runner = FakeRunner([
        (["docker", "ps", "-aq", "--filter", "label=djdeploy.lab.cluster=djlab"], (0, "c1\n")),
        (["docker", "inspect", "c1"], (0, inspect)),
        (["docker", "rm", "-f", "-v", "djlab-node1"], (0, "")),
        (["docker", "volume", "ls", "-q", "--filter", "label=djdeploy.lab.cluster=djlab"], (0, "djlab-node1-docker\n")),
        (["docker", "volume", "rm", "-f", "djlab-node1-docker"], (0, "")),
        (["docker", "network", "ls", "-q", "--filter", "label=djdeploy.lab.cluster=djlab"], (0, "n1\n")),
        (["docker", "network", "rm", "n1"], (0, "")),
    ])
    monkeypatch.setattr(cluster, "_runners", lambda echo=True, out=None: (runner, runner))
    monkeypatch.setattr(cluster_registry, "stop", lambda files: files.name == "djlab")
    monkeypatch.setattr(cluster, "_remove_cgroups", lambda name: [])
    removed = cluster.down("djlab")
    assert removed == ["djlab-node1", "djlab-node1-docker", "network n1", "registry endpoint of djlab",
                       str(tmp_path / "cluster" / "djlab")]
    assert not (tmp_path / "cluster" / "djlab").exists()
    assert [a[:3] for a in runner.history] == [
        ["docker", "ps", "-aq"], ["docker", "inspect", "c1"], ["docker", "rm", "-f"],
        ["docker", "volume", "ls"], ["docker", "volume", "rm"], ["docker", "network", "ls"], ["docker", "network", "rm"]]
    assert cluster_state.existing_names() == []


def test_status_without_a_cluster_names_the_fix(monkeypatch, tmp_path):
    from deploy.lab import cluster, paths

    monkeypatch.setattr(paths, "LAB_DIR", tmp_path)
    with pytest.raises(ToolkitError) as err:
        cluster.status("djlab")
    assert str(err.value) == (f"no lab cluster named djlab is up ({tmp_path}/cluster/djlab/spec.json is missing); "
                              "run `inv cluster.up`")


@pytest.mark.parametrize("attached,connects", [('{"djc-acme":{}}', True), ('{"djc-acme":{},"djc-net":{}}', False)])
def test_cluster_acme_ensure_attaches_pebble_once_and_writes_both_roots(tmp_path, monkeypatch, attached, connects):
    from deploy.lab import acme, cluster_acme, paths

    monkeypatch.setattr(paths, "LAB_DIR", tmp_path)
    started = []
    monkeypatch.setattr(acme, "ensure", lambda runner, ca, say: started.append(ca))
    monkeypatch.setattr(acme, "ca_pems", lambda runner, ca: ("ROOT", "INTERMEDIATE"))
    monkeypatch.setattr(acme, "api_root_pem", lambda runner, ca: "API ROOT")
    runner = FakeRunner([(["docker", "inspect"], (0, attached)), (["docker", "network", "connect"], (0, ""))])
    spec = ClusterSpec(name="djc", subnet=SUBNET)
    values = cluster_acme.ensure(runner, spec)
    assert started == [cluster_acme.acme_spec(spec)]
    connect = ["docker", "network", "connect", "--alias", "pebble", "--ip", "172.30.200.5", "djc-net", "djc-pebble"]
    assert (connect in runner.history) is connects
    ca_dir = tmp_path / "cluster" / "djc" / "acme"
    assert (ca_dir / "ca-root.pem").read_text() == "ROOT" and (ca_dir / "api-root.pem").read_text() == "API ROOT"
    assert values == cluster_acme.env_values(spec, ca_dir)
