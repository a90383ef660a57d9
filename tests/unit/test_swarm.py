"""deploy.ship.swarm: exact remote commands, the stack spec, versioned secrets, parsers; the proxy config."""

import json
from types import SimpleNamespace

import pytest

from deploy.ship import stackfile, swarm

KEY = "s" * 30 + "0123456789abcdefghijklmnop"


def cfg(**over):
    base = dict(env="prod", stack_name="shop", remote_dir="/var/lib/djdeploy/shop", registry="reg.example.com",
                registry_user="ci", registry_password="regpass", django_secret_key=KEY, postgres_password="p@ss/word",
                django_allowed_hosts="shop.example.com", replicas=3, published_port=80, publish_mode="ingress",
                endpoint_mode="vip", proxy=True, proxy_image="haproxy:3.0-trixie", postgres_image="postgres:17-trixie",
                stop_grace_period=30, health_host="shop.example.com", django_trusted_proxy="",
                app_memory="512M", app_cpus="1", app_pids=256, db_memory="1G", db_cpus="1", db_pids=512,
                proxy_memory="256M", proxy_cpus="0.5", proxy_pids=128, tls_mode="external",
                tls=False, trusted_lb="192.0.2.7", https_port=443, hsts_max_age=3600, hsts_include_subdomains=False,
                hsts_preload=False, tls_cert="", tls_key="", acme_ca_root="", acme_network="", cert_sync_interval=10,
                edge_image="djedge", acme_directory="", acme_email="")
    base.update(over)
    return SimpleNamespace(**base)


def test_paths():
    p = swarm.paths(cfg(remote_dir="/srv/d/"))
    assert (p.lock, p.owner, p.stack, p.audit, p.migrate_env, p.docker_config) == (
        "/srv/d/lock", "/srv/d/lock/owner", "/srv/d/stack.yml", "/srv/d/audit.log", "/srv/d/migrate.env", "/srv/d/docker")


def test_remote_commands_exact():
    c = cfg()
    assert swarm.lock_cmd(c) == [
        "sh", "-c", 'owner="$(cat)" && mkdir -p -m 0700 "$1" && mkdir "$2" && printf "%s\\n" "$owner" > "$2/owner"',
        "lock", "/var/lib/djdeploy/shop", "/var/lib/djdeploy/shop/lock"]
    assert swarm.lock_owner_cmd(c) == ["cat", "/var/lib/djdeploy/shop/lock/owner"]
    assert swarm.unlock_cmd(c) == ["rm", "-rf", "/var/lib/djdeploy/shop/lock"]
    assert swarm.login_cmd(c) == ["docker", "--config", "/var/lib/djdeploy/shop/docker", "login", "--username", "ci",
                                  "--password-stdin", "reg.example.com"]
    assert swarm.secret_create_cmd(c, "database_url", "shop_database_url_0123456789") == [
        "docker", "secret", "create", "--label", "com.docker.stack.namespace=shop", "--label",
        "djdeploy.secret=database_url", "shop_database_url_0123456789", "-"]
    assert swarm.stack_deploy_cmd(c, "/var/lib/djdeploy/shop/stack.yml") == [
        "docker", "--config", "/var/lib/djdeploy/shop/docker", "stack", "deploy", "--with-registry-auth",
        "--compose-file", "/var/lib/djdeploy/shop/stack.yml", "shop"]
    assert swarm.migrate_cmd(c, "reg.example.com/djapp:abc1234") == [
        "docker", "--config", "/var/lib/djdeploy/shop/docker", "run", "--rm", "--network", "shop_backend",
        "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--env-file", "/var/lib/djdeploy/shop/migrate.env", "--label", "djdeploy.stack=shop", "--label",
        "djdeploy.role=migrate", "reg.example.com/djapp:abc1234", "python", "manage.py", "migrate", "--noinput"]
    assert swarm.update_status_cmd(c, "app") == [
        "docker", "service", "inspect", "--format",
        "{{if .UpdateStatus}}{{.UpdateStatus.State}} {{.UpdateStatus.StartedAt}}{{end}}", "shop_app"]
    assert swarm.finish_cmd(c) == [
        "sh", "-c", 'IFS= read -r line; printf "%s\\n" "$line" >> "$1"; status=$?; cat >> "$3"; rm -rf "$2" && exit "$status"',
        "finish", "/var/lib/djdeploy/shop/audit.log", "/var/lib/djdeploy/shop/lock", "/var/lib/djdeploy/shop/steps.jsonl"]
    assert swarm.last_steps_cmd(c) == ["tail", "-n", "1", "/var/lib/djdeploy/shop/steps.jsonl"]
    assert swarm.secret_ls_cmd(c) == ["docker", "secret", "ls", "--filter", "label=com.docker.stack.namespace=shop",
                                      "--format", "{{.Name}}"]
    assert swarm.audit_show_cmd(c, 5) == ["tail", "-n", "5", "/var/lib/djdeploy/shop/audit.log"]
    assert swarm.logs_cmd(c, True) == ["docker", "service", "logs", "--timestamps", "--tail", "200", "--follow", "shop_app"]
    assert swarm.running_tasks_cmd(c, "app") == ["docker", "service", "ps", "--quiet", "--filter",
                                                 "desired-state=running", "shop_app"]
    assert swarm.task_logs_cmd("abc", 5) == ["docker", "service", "logs", "--timestamps", "--tail", "5", "abc"]
    assert swarm.logs_cmd(c, False, 10) == ["docker", "service", "logs", "--timestamps", "--tail", "10", "shop_app"]


def test_no_secret_in_any_command():
    c = cfg()
    names = stackfile.secret_names(c)
    argvs = [swarm.login_cmd(c), swarm.migrate_cmd(c, "i"), swarm.stack_deploy_cmd(c, "f")]
    argvs += [swarm.secret_create_cmd(c, k, n) for k, n in names.items()]
    text = " ".join(" ".join(a) for a in argvs) + " ".join(names.values())
    for secret in ("regpass", KEY, "p@ss/word", "p%40ss%2Fword"):
        assert secret not in text


def test_secret_names_are_versioned_by_value():
    a = stackfile.secret_names(cfg())
    b = stackfile.secret_names(cfg(django_secret_key=KEY + "x"))
    assert a["django_secret_key"] != b["django_secret_key"]
    assert a["database_url"] == b["database_url"] and a["postgres_password"] == b["postgres_password"]
    assert a["django_secret_key"].startswith("shop_django_secret_key_") and len(a["django_secret_key"]) == 33
    assert stackfile.secret_names(cfg(stack_name="other"))["database_url"] != a["database_url"]


def test_database_url_escapes_password():
    assert stackfile.database_url(cfg()) == "postgres://app:p%40ss%2Fword@db:5432/app"


def test_stack_spec_app_update_and_rollback_policy():
    spec = stackfile.stack_spec(cfg(), "reg.example.com/djapp:abc", "abc", "abc@T", "shop_haproxy_1")
    app = spec["services"]["app"]
    assert app["image"] == "reg.example.com/djapp:abc"
    assert app["deploy"]["replicas"] == 3
    assert app["deploy"]["update_config"] == {"parallelism": 1, "delay": "0s", "order": "start-first",
                                              "failure_action": "rollback", "monitor": "4s", "max_failure_ratio": 0}
    assert app["deploy"]["rollback_config"]["order"] == "start-first"
    assert app["deploy"]["rollback_config"]["failure_action"] == "pause"
    assert app["stop_grace_period"] == "30s"
    assert app["healthcheck"] == {"interval": "1s", "timeout": "3s", "retries": 3, "start_period": "15s"}
    assert "test" not in app["healthcheck"]  # the image's own test stays (a broken image stays broken)
    assert app["environment"]["APP_VERSION"] == "abc"
    assert app["environment"]["DJANGO_MANAGEPY_MIGRATE"] == "off"
    assert app["environment"]["DJANGO_SECRET_KEY_FILE"] == "/run/secrets/django_secret_key"
    assert app["environment"]["DATABASE_URL_FILE"] == "/run/secrets/database_url"
    assert app["environment"]["DJDEPLOY_RELEASE"] == "abc@T"
    assert "ports" not in app  # the proxy publishes
    assert spec["networks"] == {"backend": {"driver": "overlay", "attachable": True}, "edge": {"driver": "overlay"}}
    names = stackfile.secret_names(cfg())
    assert spec["secrets"] == {k: {"external": True, "name": v} for k, v in names.items()}


def test_stack_spec_proxy_db_and_modes():
    spec = stackfile.stack_spec(cfg(publish_mode="host", endpoint_mode="dnsrr"), "i", "t", "r", "shop_haproxy_1")
    proxy, db = spec["services"]["proxy"], spec["services"]["db"]
    assert "ports" not in proxy and "bind :80\n" in spec["services"]["relay"]["environment"]["RELAY_CFG"]
    assert proxy["deploy"]["update_config"]["order"] == "start-first"   # the relay publishes host-mode ports
    # the edge image; its configuration comes from the certs service (TLS_MODE=external: no certificate there)
    assert proxy["environment"] == {"CONFIG_URL": "http://tasks.certs:8081/haproxy.cfg",
                                    "EDGE_HANDOFF": "/var/lib/haproxy/handoff.sock"} and "configs" not in proxy
    assert spec["services"]["certs"]["command"] == ["edge-agent", "certs", "--mode", "external", "--haproxy-cfg",
                                                    "/etc/edge/haproxy.cfg"]
    assert spec["configs"] == {"haproxy_cfg": {"name": "shop_haproxy_1", "file": "/var/lib/djdeploy/shop/haproxy.cfg"}}
    assert {s["deploy"]["endpoint_mode"] for s in spec["services"].values()} == {"dnsrr"}
    assert db["deploy"]["placement"] == {"constraints": ["node.role == manager"]}
    assert db["volumes"][0] == "pgdata:/var/lib/postgresql/data"
    assert "postgres_password" in db["entrypoint"][2] and "$$(cat /run/secrets/postgres_password)" in db["entrypoint"][2]
    assert "p@ss" not in json.dumps(spec)


def test_stack_spec_without_proxy_publishes_the_app():
    spec = stackfile.stack_spec(cfg(proxy=False), "i", "t", "r", "x")
    assert set(spec["services"]) == {"app", "db"} and "configs" not in spec
    assert spec["services"]["app"]["ports"] == [{"target": 8000, "published": 80, "protocol": "tcp", "mode": "ingress"}]


def test_base_stack_keeps_only_db_and_proxy():
    spec = stackfile.stack_spec(cfg(), "i", "t", "r", "x", only=("db", "proxy"))
    assert set(spec["services"]) == {"db", "proxy"}
    assert spec["services"]["db"] == stackfile.stack_spec(cfg(), "i2", "t2", "r2", "x")["services"]["db"]


def test_render_is_json_which_is_yaml():
    spec = stackfile.stack_spec(cfg(), "i", "t", "r", "x")
    assert json.loads(stackfile.render(spec)) == spec


@pytest.mark.parametrize("text,expected", [
    ("updating 2026-11-22 01:00:00 +0000 UTC\n", ("updating", "2026-11-22 01:00:00 +0000 UTC")),
    ("\n", ("", "")),
    ("rollback_completed 2026-11-22", ("rollback_completed", "2026-11-22")),
])
def test_parse_update_status(text, expected):
    assert swarm.parse_update_status(text) == expected


def test_parse_running():
    text = "Running 3 seconds ago|i|\nStarting 1 second ago|i|\nRunning 1 second ago|i|\nPreparing|i|no such image\n"
    assert swarm.parse_running(text) == (2, ["no such image"])


def test_audit_line_and_previous_image():
    line = swarm.audit_line(when="T1", who="me@host", action="deploy", env="prod", git="abc", image="r/djapp:v1",
                            digest="", result="ok")
    assert line == "T1 who=me@host action=deploy env=prod git=abc image=r/djapp:v1 digest=- tree=clean result=ok\n"
    assert swarm.audit_line(when="T", who="w", action="deploy", env="e", git="g", image="i", digest="sha256:1",
                            result="failed", dirty=True) == (
        "T who=w action=deploy env=e git=g image=i digest=sha256:1 tree=dirty result=failed\n")
    text = line + line.replace("T1", "T2").replace("v1", "v2") + \
        line.replace("T1", "T3").replace("v1", "v3").replace("result=ok", "result=failed")
    rows = swarm.parse_audit(text)
    assert [r["image"] for r in rows] == ["r/djapp:v1", "r/djapp:v2", "r/djapp:v3"]
    assert swarm.previous_image(rows) == "r/djapp:v1"
    assert swarm.previous_image(rows[:1]) is None


def test_proxy_config_routes_by_dns_with_health_checks_and_retries():
    text = stackfile.PROXY_CFG.read_text()
    for needle in ("nameserver dns 127.0.0.11:53", 'server-template app "${APP_SLOTS}" "tasks.${APP_SERVICE}:8000"',
                   'http-check send meth GET uri /health/ ver HTTP/1.1 hdr Host "${HEALTH_HOST}"',
                   "option redispatch", "retry-on conn-failure empty-response 503", "init-addr last,none",
                   "http-request disable-l7-retry if !METH_GET !METH_HEAD", "bind :8080"):
        assert needle in text


def test_rollback_spec_replaces_all_tasks_at_once_still_start_first():
    app = stackfile.stack_spec(cfg(), "i", "t", "r", "x", parallelism=0)["services"]["app"]
    assert app["deploy"]["update_config"]["parallelism"] == 0
    assert app["deploy"]["update_config"]["order"] == "start-first"
    assert app["deploy"]["rollback_config"]["parallelism"] == 1


def test_proxy_runs_on_every_node_and_app_replicas_spread_over_nodes():
    spec = stackfile.stack_spec(cfg(publish_mode="host", endpoint_mode="dnsrr"), "i", "t", "r", "x")
    proxy, app = spec["services"]["proxy"]["deploy"], spec["services"]["app"]["deploy"]
    assert proxy["mode"] == "global" and "replicas" not in proxy
    assert proxy["update_config"]["order"] == "start-first"  # the relay hands host-mode ports over (edge_relay)
    assert app["placement"] == {"preferences": [{"spread": "node.id"}]}
    assert app["replicas"] == spec["services"]["app"]["deploy"]["replicas"]


def test_tasks_by_node_command():
    assert swarm.tasks_by_node_cmd(cfg()) == [
        "docker", "stack", "ps", "--filter", "desired-state=running",
        "--format", "{{.Name}}\t{{.Node}}\t{{.CurrentState}}", "shop"]


TMPFS = {"type": "tmpfs", "target": "/tmp", "tmpfs": {"size": 67108864}}


def test_every_service_is_hardened_with_the_configured_limits():
    spec = stackfile.stack_spec(cfg(app_memory="300M", app_cpus="1.5", app_pids=99), "i", "t", "r", "x")
    assert spec["version"] == "3.9"
    app, db, proxy = (spec["services"][n] for n in ("app", "db", "proxy"))
    assert (app["read_only"], app["cap_drop"], app["volumes"]) == (True, ["ALL"], [TMPFS])
    assert "cap_add" not in app and "cap_add" not in proxy
    assert app["deploy"]["resources"] == {"limits": {"memory": "300M", "cpus": "1.5", "pids": 99}}
    assert (proxy["read_only"], proxy["cap_drop"], proxy["volumes"]) == (True, ["ALL"], [TMPFS])
    assert proxy["deploy"]["resources"] == {"limits": {"memory": "256M", "cpus": "0.5", "pids": 128}}
    assert (db["read_only"], db["cap_drop"]) == (True, ["ALL"])
    assert db["cap_add"] == ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"]
    assert db["volumes"] == ["pgdata:/var/lib/postgresql/data", TMPFS, dict(TMPFS, target="/var/run/postgresql")]
    assert db["deploy"]["resources"] == {"limits": {"memory": "1G", "cpus": "1", "pids": 512}}
    assert all("security_opt" not in s for s in spec["services"].values())  # not a service option on engine 20.10
