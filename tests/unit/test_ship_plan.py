"""deploy.ship.plan: the exact steps of a fresh deploy, a redeploy, a rollback and a deploy with --image (pure:
configuration + release + environment state in, steps out), and how the dry run prints them."""

import hashlib
import io

import pytest

from deploy.core.errors import ConfigError
from deploy.ship import executor, plan, report, ssh
from deploy.ship.stackfile import secret_names
from shipfakes import DIGEST, FakeManager, FakeRegistry, make_cfg, offline, remote  # noqa: F401

D = "/var/lib/djdeploy/djt"
PROXY_TEXT = "global\n"
LOCK = (f"[manager] run take the deploy lock {D}/lock (owner line on stdin): sh -c 'owner=\"$(cat)\" && mkdir -p -m 0700 "
        f"\"$1\" && mkdir \"$2\" && printf \"%s\\n\" \"$owner\" > \"$2/owner\"' lock {D} {D}/lock")
CONFIRM = "[manager] check that the environment is as planned (app service, secrets, registry tag): "
FRESH_STATE = "no app service yet, 0 stack secret(s), image tag not in the registry"
KNOWN_STATE = f"app service exists (completed), 3 stack secret(s), image tag in the registry ({DIGEST})"
BUILD = "[local] build the app image tagged v2: deploy.image.builder.build"
PUSH = ("[local] push 127.0.0.1:5000/djapp:v2 to the registry (Docker SDK, credentials in the auth header): "
        "its digest pins the release")
PUSHED = "<digest of the push>"
BRIDGE = ("[local] build v1 plus the hashed static files of the other recent releases: deploy.image.bridge (FROM the "
          "tag's registry digest)")
BRIDGE_PUSH = "[local] push 127.0.0.1:5000/djapp:v1-static to the registry (unless nothing was added): its digest pins the rollback"
PROXY = f"[manager] put the proxy config: {D}/haproxy.cfg (mode 0600)"
LOGIN = (f"[manager] run log the manager in to the registry (password on stdin): docker --config {D}/docker login "
         "--username lab --password-stdin 127.0.0.1:5000")
PROXY_ID = hashlib.sha256(PROXY_TEXT.encode()).hexdigest()[:16]
BASE = [f"[manager] put the base stack file (db, proxy, certs, relay): {D}/stack-base.yml (mode 0600)",
        f"[manager] run deploy db and proxy and certs and relay: docker --config {D}/docker stack deploy --with-registry-auth "
        f"--compose-file {D}/stack-base.yml djt",
        "[manager] poll until djt_db runs 1 healthy task(s): poll `docker service ps --filter desired-state=running "
        "--format '{{.CurrentState}}|{{.Image}}|{{.Error}}' djt_db` up to 300s",
        f"[manager] poll until every proxy runs the proxy configuration {PROXY_ID} (a seamless reload: no proxy task "
        "is replaced): poll `sh -c 'docker service ps --filter desired-state=running --format \"{{.CurrentState}}\" "
        "\"$1\" | grep -c \"^Running\"; c=\"$(docker ps -q --filter \"label=com.docker.swarm.service.name=$2\" "
        "--filter status=running | head -n 1)\"; [ -n \"$c\" ] || { echo \"no running task of $2 on this node\" >&2; "
        "exit 3; }; exec docker exec \"$c\" edge-agent status' proxies-status djt_proxy djt_certs` up to 300s",
        f"[manager] put the migration's environment: {D}/migrate.env (mode 0600)",
        # deploy.ops: the backups dir, the migration-safety check, the pre-migrate backup (tests/unit/test_ops_deploy.py)
        f"[manager] run create the backups dir (pre-migrate and scheduled backups): mkdir -p -m 0700 {D}/backups",
        "[manager] check the migration plan: which migrations are pending, none breaking the running release: "
        f"docker --config {D}/docker run --rm -i --network djt_backend --env-file {D}/migrate.env --label "
        "djdeploy.stack=djt --label djdeploy.role=migration-check '<the new image>' python - (script on stdin)",
        "[manager] check back up the database if migrations are pending (pg_dump -Fc, checksum sidecar): "
        f"into {D}/backups, reason pre-migrate"]
RM = f"[manager] run remove the migration's environment: rm -f {D}/migrate.env"
TRUSTED = ("[manager] run write the stack network's subnet as the app's DJANGO_TRUSTED_PROXY: sh -c 'set -e; umask 077; "
           "s=\"$(docker network inspect --format \"{{range .IPAM.Config}}{{.Subnet}},{{end}}\" \"$1\")\"; [ -n \"$s\" ]; "
           f"printf \"DJANGO_TRUSTED_PROXY=%s\\n\" \"${{s%,}}\" > \"$2\"' trusted-proxy djt_backend {D}/trusted-proxy.env")
ROLLOUT = (f"[manager] run roll out the app (stack deploy): docker --config {D}/docker stack deploy --with-registry-auth "
           f"--compose-file {D}/stack.yml djt")
WAIT_NEW_APP = ("[manager] poll until djt_app runs 2 healthy task(s): poll `docker service ps --filter "
                "desired-state=running --format '{{.CurrentState}}|{{.Image}}|{{.Error}}' djt_app` up to 300s")
WAIT_UPDATE = ("[manager] poll until djt_app has converged (completed; rollback_completed = failure): poll `docker "
               "service inspect --format '{{if .UpdateStatus}}{{.UpdateStatus.State}} {{.UpdateStatus.StartedAt}}{{end}}' "
               "djt_app` up to 300s")
WAIT_PROXY = ("[manager] poll until djt_proxy runs 1 healthy task(s): poll `docker service ps --filter "
              "desired-state=running --format '{{.CurrentState}}|{{.Image}}|{{.Error}}' djt_proxy` up to 300s")
FINISH = ("[manager] run append the audit line and the step timings, release the lock: sh -c 'IFS= read -r line; "
          "printf \"%s\\n\" \"$line\" >> \"$1\"; status=$?; cat >> \"$3\"; rm -rf \"$2\" && exit \"$status\"' finish "
          f"{D}/audit.log {D}/lock {D}/steps.jsonl")


def stack(tag, digest):
    return f"[manager] put the stack file (app image 127.0.0.1:5000/djapp:{tag}@{digest}): {D}/stack.yml (mode 0600)"


def migrate(tag, digest):
    image = f"127.0.0.1:5000/djapp:{tag}@{digest}"
    image = f"'{image}'" if "<" in image else image
    return (f"[manager] run migrate the database once (a one-off container of the new image): docker --config "
            f"{D}/docker run --rm --network djt_backend --read-only --tmpfs /tmp --cap-drop ALL --security-opt "
            f"no-new-privileges --env-file {D}/migrate.env --label djdeploy.stack=djt --label "
            f"djdeploy.role=migrate {image} python manage.py migrate --noinput")


def health(tag):
    return (f"[local] check that http://127.0.0.1:18080/health/?ready=1 (Host: 127.0.0.1) serves X-App-Version {tag}: "
            "3 answers in a row 200 with that version, up to 60s")


def secrets(cfg):
    return [f"[manager] run create the secret {name} (value on stdin): docker secret create --label "
            f"com.docker.stack.namespace=djt --label djdeploy.secret={key} {name} -"
            for key, name in secret_names(cfg).items()]


@pytest.fixture
def cfg(tmp_path):
    return make_cfg(tmp_path)


def release(action="deploy", tag="v2", build=True, migrate=True, dirty=False):
    return plan.Release(action=action, tag=tag, build=build, migrate=migrate, dirty=dirty, owner="me\n", stamp="T")


def lines(cfg, rel, state):
    return [s.line() for s in plan.build_deploy_plan(cfg, rel, state, PROXY_TEXT).steps]


def edge(cfg):
    from deploy.ship import edge_image

    return (f"[local] build the edge image {edge_image.ref(cfg)} unless the registry has it: FROM haproxy:3.0-trixie, "
            "deploy/ship/edge (tag = hash of the recipe)")


def known(cfg):
    return plan.EnvState(app=("completed", "T1"), secrets=frozenset(secret_names(cfg).values()), digest=DIGEST)


def test_fresh_environment_builds_creates_every_secret_and_waits_for_the_new_service(cfg):
    assert lines(cfg, release(), plan.EnvState()) == [
        LOCK, CONFIRM + FRESH_STATE, BUILD, PUSH, edge(cfg), stack("v2", PUSHED), PROXY, LOGIN, *secrets(cfg), *BASE,
        migrate("v2", PUSHED), RM, TRUSTED, ROLLOUT, WAIT_NEW_APP, WAIT_PROXY, health("v2"), FINISH]


def test_redeploy_of_a_new_tag_creates_no_secret_and_waits_for_the_update(cfg):
    state = plan.EnvState(app=("completed", "T1"), secrets=frozenset(secret_names(cfg).values()))
    assert lines(cfg, release(), state) == [
        LOCK, CONFIRM + "app service exists (completed), 3 stack secret(s), image tag not in the registry", BUILD,
        PUSH, edge(cfg), stack("v2", PUSHED), PROXY, LOGIN, *BASE, migrate("v2", PUSHED), RM, TRUSTED, ROLLOUT, WAIT_UPDATE, WAIT_PROXY,
        health("v2"), FINISH]


def test_redeploy_with_a_rotated_secret_creates_only_that_one(cfg):
    names = secret_names(cfg)
    state = plan.EnvState(app=("completed", "T1"), secrets=frozenset([names["database_url"], names["postgres_password"]]))
    steps = lines(cfg, release(), state)
    assert [s for s in steps if "create the secret" in s] == secrets(cfg)[:1]


def test_rollback_has_no_build_no_base_no_migration_and_pins_the_registry_digest(cfg):
    """Its only build is the static bridge on top of the tag's image; with STATIC_RELEASES=0 the registry digest."""
    from dataclasses import replace

    assert lines(cfg, release("rollback", "v1", build=False, migrate=False), known(cfg)) == [
        LOCK, CONFIRM + KNOWN_STATE, BRIDGE, BRIDGE_PUSH, edge(cfg), stack("v1", PUSHED), PROXY, LOGIN, TRUSTED, ROLLOUT,
        WAIT_UPDATE, WAIT_PROXY, health("v1"), FINISH]
    assert lines(replace(cfg, static_releases=0), release("rollback", "v1", build=False, migrate=False), known(cfg)) == [
        LOCK, CONFIRM + KNOWN_STATE, edge(cfg), stack("v1", DIGEST), PROXY, LOGIN, TRUSTED, ROLLOUT, WAIT_UPDATE, WAIT_PROXY, health("v1"),
        FINISH]


def test_deploy_with_image_skips_build_and_push_and_pins_the_registry_digest(cfg):
    """Only the static bridge is built (and pushed) on top of the tag; with STATIC_RELEASES=0 the registry digest."""
    from dataclasses import replace

    bridge = [BRIDGE.replace("v1", "v2"), BRIDGE_PUSH.replace("v1", "v2")]
    assert lines(cfg, release(build=False), known(cfg)) == [
        LOCK, CONFIRM + KNOWN_STATE, *bridge, edge(cfg), stack("v2", PUSHED), PROXY, LOGIN, *BASE, migrate("v2", PUSHED), RM,
        TRUSTED, ROLLOUT, WAIT_UPDATE, WAIT_PROXY, health("v2"), FINISH]
    assert lines(replace(cfg, static_releases=0), release(build=False), known(cfg)) == [
        LOCK, CONFIRM + KNOWN_STATE, edge(cfg), stack("v2", DIGEST), PROXY, LOGIN, *BASE, migrate("v2", DIGEST), RM, TRUSTED, ROLLOUT,
        WAIT_UPDATE, WAIT_PROXY, health("v2"), FINISH]


def test_a_clean_tag_already_in_the_registry_is_not_rebuilt_but_a_dirty_one_is(cfg):
    assert BUILD not in lines(cfg, release(), known(cfg))
    dirty = lines(cfg, release(tag="v2", dirty=True), known(cfg))
    assert dirty[2:5] == [BUILD, PUSH, edge(cfg)] and dirty[5] == stack("v2", PUSHED)


def test_a_rollback_replaces_all_tasks_at_once_and_a_deploy_rollout_parallelism_at_a_time(cfg, tmp_path):
    import json

    from shipfakes import Built

    def spec(rel, c=cfg):
        step = [s for s in plan.build_deploy_plan(c, rel, known(c), PROXY_TEXT).steps if s.path.endswith("stack.yml")][0]
        job = type("J", (), {"pinned": "img@" + DIGEST})()
        return json.loads(step.content(job))["services"]["app"]

    assert spec(release("rollback", "v1", build=False, migrate=False))["deploy"]["update_config"]["parallelism"] == 0
    assert spec(release(build=False))["deploy"]["update_config"]["parallelism"] == 0   # default: all at once
    one = make_cfg(tmp_path, "ROLLOUT_PARALLELISM=1\n")
    assert spec(release(build=False), one)["deploy"]["update_config"]["parallelism"] == 1
    assert spec(release("rollback", "v1", build=False, migrate=False), one)["deploy"]["update_config"]["parallelism"] == 0
    assert spec(release(build=False))["image"] == "img@" + DIGEST and Built("x").ref == "x"


def test_rollout_parallelism_out_of_range_is_one_line_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        make_cfg(tmp_path, "ROLLOUT_PARALLELISM=-1\n")
    assert "ROLLOUT_PARALLELISM must be a whole number from 0 to 100 (got '-1')" in str(err.value)


def test_steps_carry_secrets_only_on_stdin_never_in_what_is_printed(cfg):
    the_plan = plan.build_deploy_plan(cfg, release(), plan.EnvState(), PROXY_TEXT)
    printed = report.plan_text(the_plan) + repr(the_plan.steps)
    for secret in cfg.secrets:
        assert secret not in printed
    stdins = [s.stdin for s in the_plan.steps if isinstance(s.stdin, str)]
    assert "regsecret\n" in stdins and "pgsecret" in stdins


def test_adding_a_step_is_one_line(cfg):
    the_plan = plan.build_deploy_plan(cfg, release(), plan.EnvState(), PROXY_TEXT)
    extra = plan.run("say hello", ["echo", "hello"])
    assert extra.line() == "[manager] run say hello: echo hello"
    assert plan.Plan(the_plan.title, the_plan.steps[:-1] + (extra, the_plan.steps[-1]), the_plan.state).steps[-2] == extra


def test_dry_run_prints_exactly_the_plan_and_changes_nothing(cfg, offline, monkeypatch):
    FakeRegistry(monkeypatch, {"v2": DIGEST})
    monkeypatch.setattr(ssh, "open_connection", lambda cfg: pytest.fail("the fake manager is passed in"))
    manager = FakeManager(app=True, secrets=secret_names(cfg).values())
    out = io.StringIO()
    outcome = executor.deploy(cfg, tag="v2", build=False, dry_run=True, out=out, remote=remote(cfg, manager))
    from deploy.ship import edge_cfg

    rendered = hashlib.sha256(edge_cfg.render(cfg).encode()).hexdigest()[:16]   # what the deploy puts and waits for
    expected = [LOCK, CONFIRM + KNOWN_STATE, BRIDGE.replace("v1", "v2"), BRIDGE_PUSH.replace("v1", "v2"),
                edge(cfg), stack("v2", PUSHED), PROXY, LOGIN, *[b.replace(PROXY_ID, rendered) for b in BASE], migrate("v2", PUSHED), RM, TRUSTED, ROLLOUT, WAIT_UPDATE,
                WAIT_PROXY, health("v2"), FINISH]
    assert out.getvalue().splitlines() == [
        f"plan: {len(expected)} steps (deploy 127.0.0.1:5000/djapp:v2 to lab; state: {KNOWN_STATE})",
        *[f"{n:>3}. {line}" for n, line in enumerate(expected, 1)],
        f"dry run: {len(expected)} steps planned; nothing was run, no lock was taken"]
    assert [s.line() for s in outcome.plan.steps] == expected and outcome.result == "planned"
    assert all(" secret ls " in c or "UpdateStatus.State" in c for c in manager.commands()), "read-only queries only"
    assert manager.files == {} and "is serving" not in out.getvalue()


def test_dry_run_of_a_rollback_names_the_previous_tag_from_the_audit_log(cfg, offline, monkeypatch):
    from deploy.ship import swarm
    from invoke import Result

    FakeRegistry(monkeypatch, {"v1": DIGEST, "v2": DIGEST})
    audit = "".join(swarm.audit_line(when=f"T{i}", who="me", action="deploy", env="lab", git="g",
                                     image=f"127.0.0.1:5000/djapp:{t}", digest=DIGEST, result="ok") for i, t in enumerate(["v1", "v2"]))
    manager = FakeManager([("audit.log", Result(stdout=audit))], app=True, secrets=secret_names(cfg).values())
    out = io.StringIO()
    outcome = executor.rollback(cfg, dry_run=True, out=out, remote=remote(cfg, manager))
    assert out.getvalue().splitlines()[0].startswith("plan: 14 steps (rollback 127.0.0.1:5000/djapp:v1 to lab;")
    assert outcome.plan.steps[5].line() == stack("v1", PUSHED)


def stack_file(cfg, rel, name):
    import json

    step = [s for s in plan.build_deploy_plan(cfg, rel, known(cfg), PROXY_TEXT).steps if s.path.endswith(name)][0]
    return json.loads(step.content(type("J", (), {"pinned": "img@" + DIGEST})()))


def test_the_rollout_stack_file_holds_the_app_alone_so_a_rerun_of_its_stack_deploy_touches_nothing_else(cfg):
    # Swarm's transient "update out of sequence" on another service made the whole stack deploy run again, which
    # re-applied the app's identical spec: Swarm then resets the app's UpdateStatus (and its rollback target).
    spec = stack_file(cfg, release(build=False), "/stack.yml")
    assert list(spec["services"]) == ["app"] and "configs" not in spec
    base = stack_file(cfg, release(build=False), "/stack-base.yml")
    assert sorted(base["services"]) == ["certs", "db", "proxy", "relay"] and "configs" in base
    assert "configs" in base["services"]["certs"] and "configs" not in base["services"]["proxy"]


def test_scheduled_backups_are_deployed_after_the_health_check_in_their_own_stack_file(cfg):
    import dataclasses

    on = dataclasses.replace(cfg, backup_schedule=True)
    steps = lines(on, release(build=False), known(on))
    assert steps[-4:] == [
        health("v2"),
        f"[manager] put the backup service's stack file: {D}/stack-backup.yml (mode 0600)",
        "[manager] run deploy the scheduled backups (release label of this release): docker --config "
        f"{D}/docker stack deploy --with-registry-auth --compose-file {D}/stack-backup.yml djt", FINISH]
    spec = stack_file(on, release(build=False), "/stack-backup.yml")
    assert list(spec["services"]) == ["backup"] and spec["services"]["backup"]["environment"]["RELEASE"] == "v2"
    assert "backup" not in stack_file(on, release(build=False), "/stack.yml")["services"]
    assert lines(cfg, release(build=False), known(cfg))[-2:] == [health("v2"), FINISH]
