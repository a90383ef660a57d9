"""App settings, an external Postgres and uploads on S3, proven against the lab (registry, SSH manager, Swarm).

One stack per session, the tests run in order and build on each other: a deploy pointed at a Postgres outside
the stack migrates and serves; the app's own variable and secret reach every task (and no task prints them);
an upload is read back through another replica; a rotated secret rolls the service and the upload survives
that redeploy; a rollback keeps the upload too.
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from tests.uploads.conftest import PNG_BYTES as PNG, Site, deploy, docker, wait_for

pytestmark = [pytest.mark.lab, pytest.mark.engine]
STATE: dict = {}


def tasks(env) -> list[str]:
    """The running app task containers (single-node lab: all on this engine)."""
    return docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={env.stack}_app").stdout.split()


def in_task(container: str, code: str) -> str:
    return docker("exec", container, "python", "-c", code).stdout.strip()


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


SEEN = ("import hashlib, os; from djdeploy_django import env; "
        "print(os.environ.get('UPLOADS_CHECK', '-'), os.environ.get('UPLOADS_TOKEN_FILE', '-'), "
        "hashlib.sha256(env.secret('UPLOADS_TOKEN').encode()).hexdigest())")


def assert_never_printed(env, printed: str) -> None:
    for value in env.cfg().secrets + (env.variable,):
        assert value not in printed


def test_deploy_with_an_external_postgres_migrates_and_serves(env):
    v1 = env.tag("v1")
    outcome, printed = deploy(env, v1)
    assert outcome.result == "ok"
    names = docker("service", "ls", "--format", "{{.Name}}", "--filter", f"name={env.stack}_").stdout.split()
    assert sorted(names) == [f"{env.stack}_{s}" for s in ("app", "certs", "proxy", "relay")]   # no db service
    site = Site(env.port)
    status, headers, _ = site.get("/health/?ready=1")
    assert (status, headers["X-App-Version"]) == (200, v1)
    tables = docker("exec", env.pg, "psql", "-U", "app", "-d", "app", "-tAc",
                    "select count(*) from django_migrations where app = 'notes'").stdout.strip()
    assert int(tables) >= 1, "the migration ran against the external Postgres"
    assert_never_printed(env, printed)
    STATE.update(v1=v1, site=site)


def test_the_apps_variable_and_secret_reach_every_task_and_no_spec_holds_the_value(env):
    running = tasks(env)
    assert len(running) == 2
    expected = f"{env.variable} /run/secrets/app_uploads_token {sha(env.token.read_text().strip())}"
    for container in running:
        assert in_task(container, SEEN) == expected
    spec = docker("service", "inspect", f"{env.stack}_app").stdout
    assert env.token.read_text().strip() not in spec and env.pg_password not in spec
    assert "UPLOADS_TOKEN_FILE=/run/secrets/app_uploads_token" in spec


def test_an_upload_is_served_by_another_replica(env):
    site = STATE["site"]
    name, stored_by = site.upload("pixel.png", PNG)
    assert name.startswith("uploads/pixel") and name.endswith(".png")

    def other_replica():
        status, headers, body = site.get(f"/test/upload/?name={name}")
        return (headers["X-Served-By"], body) if headers["X-Served-By"] != stored_by else None

    served_by, body = wait_for(other_replica, 30, "a replica other than the uploader to answer")
    assert body == PNG and served_by != stored_by
    STATE["upload"] = name


def read_back(env, name: str) -> set:
    """Read the upload until both replicas answered it; return who answered."""
    site, seen = STATE["site"], set()

    def both():
        status, headers, body = site.get(f"/test/upload/?name={name}")
        assert (status, body) == (200, PNG)
        seen.add(headers["X-Served-By"])
        return len(seen) >= 2
    wait_for(both, 30, "both replicas to serve the upload")
    return seen


def test_rotating_the_app_secret_rolls_the_service_and_the_upload_stays(env):
    before = set(tasks(env))
    old_name = json.loads(docker("service", "inspect", f"{env.stack}_app").stdout)[0]
    old_secrets = {s["SecretName"] for s in old_name["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"]}
    env.token.write_text("rotated-" + os.urandom(16).hex() + "\n")
    v2 = env.tag("v2")
    outcome, printed = deploy(env, v2)
    assert outcome.result == "ok"
    spec = json.loads(docker("service", "inspect", f"{env.stack}_app").stdout)[0]
    new_secrets = {s["SecretName"] for s in spec["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"]}
    changed = sorted(old_secrets ^ new_secrets)
    assert len(changed) == 2 and all("_app_uploads_token_" in n for n in changed)
    after = wait_for(lambda: (t := set(tasks(env))) and len(t) == 2 and not (t & before) and t, 60,
                     "the old tasks to be replaced")
    for container in after:
        assert in_task(container, SEEN).split()[-1] == sha(env.token.read_text().strip())
    assert_never_printed(env, printed)
    assert len(read_back(env, STATE["upload"])) == 2
    STATE["v2"] = v2


def test_rollback_keeps_the_upload(env):
    outcome, printed = deploy(env, None, action="rollback")
    assert outcome.result == "ok"
    status, headers, _ = STATE["site"].get("/health/?ready=1")
    assert (status, headers["X-App-Version"]) == (200, STATE["v1"])
    assert len(read_back(env, STATE["upload"])) == 2
    assert_never_printed(env, printed)


def test_media_volume_on_one_node_is_shared_by_the_replicas_and_survives_a_redeploy(env):
    for key in [k for k in env.extra if "AWS_" in k]:
        del env.extra[key]                     # uploads move from S3 to the stack's named volume
    env.write(MEDIA_VOLUME="on")
    outcome, _ = deploy(env, STATE["v2"], build=False)
    assert outcome.result == "ok"
    site = STATE["site"]
    name, stored_by = site.upload("volume.png", PNG)
    assert read_back(env, name) >= {stored_by}
    status, _, body = site.get(f"/media/{name}")              # uWSGI serves the volume under /media/
    assert (status, body) == (200, PNG)
    outcome, _ = deploy(env, STATE["v1"], build=False)
    assert outcome.result == "ok"
    assert len(read_back(env, name)) == 2
