"""Operating a lab environment for real (one stack per session, tests build on each other in order):
backup round trip with download/upload, shell under a pseudo-terminal, createsuperuser then an admin login,
maintenance mode under load, the pre-migrate backup, an unsafe migration refused then allowed, and a
restore refused because the database's schema is newer. (This environment is plain HTTP; the real browser's admin
login after `inv manage --env lab -- createsuperuser` is in tests/ship/test_https_lab.py, over HTTPS by name.)"""

from __future__ import annotations

import http.client
import os
import re
import secrets
import shutil
import time
import urllib.parse

import pytest

import ops_ship_helpers as ship
from ops_helpers import Load, env_inv

pytestmark = [pytest.mark.lab, pytest.mark.engine]
STATE: dict = {}
ADD_EXTRA = '''from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("notes", "0001_initial")]
    operations = [migrations.AddField("note", "extra", models.TextField(null=True))]
'''
DROP_EXTRA = '''from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("notes", "0002_add_extra")]
    operations = [migrations.RemoveField("note", "extra")]
'''


def inv(e, *args, **kw):
    out = env_inv(e, *args, **kw)
    text = out.stdout + out.stderr
    for secret in e.cfg().secrets:
        assert secret not in text, f"inv {' '.join(args)} printed a secret"
    return out


def backups_on_manager(e) -> list:
    d = f"/var/lib/djdeploy/{e.stack}/backups"
    return sorted(n for n in os.listdir(d) if n.endswith(".dump")) if os.path.isdir(d) else []


def meta(e, name) -> dict:
    text = open(f"/var/lib/djdeploy/{e.stack}/backups/{name}.meta").read()
    return dict(line.split("=", 1) for line in text.splitlines())


def audit_last(e) -> str:
    return open(f"/var/lib/djdeploy/{e.stack}/audit.log").read().splitlines()[-1]


def leftovers(e) -> list:
    containers = ship.docker("ps", "-aq", "--filter", "label=djdeploy.role=oneoff",
                             "--filter", f"label=djdeploy.stack={e.stack}").stdout.split()
    dirs = [n for n in os.listdir(f"/var/lib/djdeploy/{e.stack}") if "_oneoff_" in n]
    return containers + dirs


def test_backup_round_trip_with_download_and_upload(labenv, tmp_path):
    e = labenv
    e.site.add_note("ops-env-note-1")
    before = backups_on_manager(e)  # the first deploy's pre-migrate backup (release none) is there already
    assert len(before) == 1 and meta(e, before[0])["reason"] == "pre-migrate"
    out = inv(e, "db.backup", "--env", "lab", "--download", DJDEPLOY_BACKUP_DIR=str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    name = re.search(r"^backup (\S+) ", out.stdout, re.M).group(1)
    assert backups_on_manager(e) == sorted(before + [name]) and meta(e, name)["reason"] == "manual"
    assert meta(e, name)["release"] == e.v1
    assert sorted(os.listdir(tmp_path)) == [name, name + ".meta"]
    listing = inv(e, "db.backups", "--env", "lab").stdout
    assert re.search(rf"^{re.escape(name)}\s+\S+ \S?B\s+\S+\s+[0-9a-f]{{12}}\s+{e.v1}\s+manual$", listing, re.M), listing
    gone = inv(e, "manage", "--env", "lab", "--", "shell", "-c",
               "from notes.models import Note; print('deleted', Note.objects.all().delete()[0])")
    assert gone.returncode == 0 and "deleted" in gone.stdout, gone.stdout + gone.stderr
    assert "ops-env-note-1" not in e.site.notes()
    out = inv(e, "db.restore", name, "--env", "lab", "--yes")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "maintenance mode on for lab" in out.stdout and "maintenance mode off for lab" in out.stdout
    assert "ops-env-note-1" in e.site.notes()
    # --upload: the manager loses its copy, the downloaded one goes back up and restores.
    os.remove(f"/var/lib/djdeploy/{e.stack}/backups/{name}")
    os.remove(f"/var/lib/djdeploy/{e.stack}/backups/{name}.meta")
    out = inv(e, "db.restore", str(tmp_path / name), "--env", "lab", "--upload", "--yes")
    assert out.returncode == 0, out.stdout + out.stderr
    assert backups_on_manager(e) == sorted(before + [name]) and "ops-env-note-1" in e.site.notes()
    STATE["first_backup"] = name


def test_shell_under_a_pseudo_terminal_reads_back_a_typed_command(labenv):
    e = labenv
    status, printed = ship.pty_shell(e.dir, "lab", "echo ops-$((6*7))-tty; test -t 0 && echo is-a-tty",
                                     "ops-42-tty", "is-a-tty")
    assert status == 3
    for secret in e.cfg().secrets:
        assert secret not in printed
    scripted = inv(e, "shell", "--env", "lab", "-c", "test -t 0 || echo no-tty; exit 5")
    assert scripted.returncode == 5 and "no-tty" in scripted.stdout
    deadline = time.monotonic() + 30
    while leftovers(e) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert leftovers(e) == []


def test_createsuperuser_from_the_environment_then_admin_login(labenv):
    e = labenv
    password = secrets.token_urlsafe(16)
    out = inv(e, "manage", "--env", "lab", "--", "createsuperuser", "--noinput", DJANGO_SUPERUSER_USERNAME="opsadmin",
              DJANGO_SUPERUSER_EMAIL="ops@example.com", DJANGO_SUPERUSER_PASSWORD=password)
    assert out.returncode == 0, out.stdout + out.stderr
    assert password not in out.stdout + out.stderr
    conn = http.client.HTTPConnection("127.0.0.1", e.port, timeout=10)
    conn.request("GET", "/admin/login/?next=/admin/")
    resp = conn.getresponse()
    page = resp.read().decode()
    cookie = re.search(r"csrftoken=([^;]+)", resp.getheader("Set-Cookie")).group(1)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    body = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "username": "opsadmin", "password": password,
                                   "next": "/admin/"})
    conn.request("POST", "/admin/login/?next=/admin/", body=body,
                 headers={"Cookie": f"csrftoken={cookie}", "Content-Type": "application/x-www-form-urlencoded",
                          "Referer": f"http://127.0.0.1:{e.port}/admin/login/"})
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 302 and resp.getheader("Location") == "/admin/", resp.status
    session = re.search(r"sessionid=([^;]+)", resp.getheader("Set-Cookie")).group(1)
    conn.request("GET", "/admin/", headers={"Cookie": f"sessionid={session}; csrftoken={cookie}"})
    resp = conn.getresponse()
    assert resp.status == 200 and "Site administration" in resp.read().decode()


def test_maintenance_on_and_off_under_load(labenv):
    e = labenv
    load = Load(e.port)
    try:
        time.sleep(1)
        out = inv(e, "maintenance", "on", "--env", "lab", "--message", "Back at noon", "--retry-after", "120")
        assert out.returncode == 0, out.stdout + out.stderr
        conn = http.client.HTTPConnection("127.0.0.1", e.port, timeout=10)
        conn.request("GET", "/anything")
        resp = conn.getresponse()
        assert (resp.status, resp.getheader("Retry-After")) == (503, "120")
        assert "Back at noon" in resp.read().decode()
        assert ship.Site(e).get("/health/?ready=1")[0] == 200
        during = len(load.results)
        out = inv(e, "maintenance", "off", "--env", "lab")
        assert out.returncode == 0, out.stdout + out.stderr
        time.sleep(2)
    finally:
        results = load.finish()
    kinds = {(s, r) for s, r in results}
    print("load results:", len(results), sorted({str(k) for k in kinds}))
    assert not [r for r in results if r[0] == "error"], "failed requests at the switch"
    assert kinds <= {(200, None), (503, "120")}, kinds
    assert (503, "120") in kinds and results[-1] == (200, None) and during > 0
    assert ship.Site(e).get("/")[0] == 200


def deploy_derived(e, name, base_tag, files, *flags):
    from deploy.ship import registry
    import io

    tag = e.tag(name)
    dockerfile = "\n".join(f"COPY {f} /app/notes/migrations/{f}" for f in files)
    local = ship.build_derived(f"djapp:{base_tag}", tag, dockerfile, files)
    registry.push(e.cfg(), local, tag, out=io.StringIO())
    out = inv(e, "deploy", "--env", "lab", "--image", tag, *flags)
    print(out.stdout[-3000:], out.stderr[-2000:])
    return tag, out


def test_pre_migrate_backup_exists_after_a_new_migration_and_not_after_none(labenv):
    e = labenv
    before = backups_on_manager(e)
    v2, out = deploy_derived(e, "v2", e.v1, {"0002_add_extra.py": ADD_EXTRA})
    assert out.returncode == 0
    new = sorted(set(backups_on_manager(e)) - set(before))
    assert len(new) == 1 and meta(e, new[0])["reason"] == "pre-migrate" and meta(e, new[0])["release"] == e.v1
    assert f" backup={new[0]} " in audit_last(e) + " " and audit_last(e).endswith("result=ok")
    v3, out = deploy_derived(e, "v3", e.v1, {"0002_add_extra.py": ADD_EXTRA})
    assert out.returncode == 0 and "skipped: no pending migrations" in out.stdout
    assert len(backups_on_manager(e)) == len(before) + 1 and " backup=" not in audit_last(e)
    STATE["v3"] = v3


ADD_MORE = ADD_EXTRA.replace('"0001_initial"', '"0002_add_extra"').replace('"extra"', '"more"')


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs over the manager's backups dir needs root")
def test_full_disk_on_the_manager_stops_the_deploy_before_migrating(labenv):
    import subprocess

    e = labenv
    serving = ship.Site(e).get("/")[1]
    d = f"/var/lib/djdeploy/{e.stack}/backups"
    os.makedirs(d, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12k,mode=0700", "tmpfs", d], check=True)
    try:
        _, out = deploy_derived(e, "full", e.v1, {"0002_add_extra.py": ADD_EXTRA, "0003_add_more.py": ADD_MORE})
        assert out.returncode == 1
        assert (f"the disk holding {d} is full; no backup was written (partial files removed); free space or fix the "
                f"cause, then `inv db.backup --env lab`. The deploy stopped before migrating: lab keeps serving the "
                f"previous version") in out.stderr
        assert os.listdir(d) == []
    finally:
        subprocess.run(["umount", d], check=False)
    assert ship.Site(e).get("/")[1] == serving and audit_last(e).endswith("result=failed")
    shown = inv(e, "manage", "--env", "lab", "--", "showmigrations", "notes")
    assert "0003_add_more" not in shown.stdout and not os.path.exists(f"/var/lib/djdeploy/{e.stack}/lock")


def test_column_dropping_migration_is_refused_then_allowed_after_a_backup(labenv):
    e = labenv
    files = {"0002_add_extra.py": ADD_EXTRA, "0003_drop_extra.py": DROP_EXTRA}
    before = backups_on_manager(e)
    _, out = deploy_derived(e, "v4", e.v1, files)
    assert out.returncode == 1
    assert ("error: refusing to migrate lab: migration notes.0003_drop_extra drops column note.extra; the running "
            "release still uses it during the rolling update. Nothing was migrated or rolled out.") in out.stderr
    assert ship.Site(e).get("/")[1] == STATE["v3"] and backups_on_manager(e) == before
    v5, out = deploy_derived(e, "v5", e.v1, files, "--allow-unsafe-migrations")
    assert out.returncode == 0
    new = sorted(set(backups_on_manager(e)) - set(before))
    assert len(new) == 1 and meta(e, new[0])["reason"] == "pre-migrate"
    assert "notes.0003_drop_extra" not in meta(e, new[0])["migrations"]
    assert f"backup={new[0]} result=ok" in audit_last(e) and ship.Site(e).get("/")[1] == v5


def test_restore_of_a_backup_older_than_the_schema_is_refused(labenv):
    e = labenv
    name = STATE["first_backup"]
    e.site.add_note("ops-env-note-kept")
    out = inv(e, "db.restore", name, "--env", "lab", "--yes")
    assert out.returncode == 1
    assert out.stderr.strip().startswith(f"error: refusing to restore {name}: the database of environment lab has a "
                                         f"newer schema (migrations notes.0002_add_extra, notes.0003_drop_extra are "
                                         f"not in the backup, taken at release {e.v1}); nothing was changed")
    assert "ops-env-note-kept" in e.site.notes() and "maintenance mode on" not in out.stdout


def test_rollback_below_the_applied_migrations_names_them_and_needs_yes(labenv):
    e = labenv
    out = inv(e, "rollback", "--env", "lab", "--to", e.v1)
    assert out.returncode == 1
    assert out.stderr.strip() == (f"error: release {e.v1} is older than the database's schema: it does not know the "
                                  "applied migration(s) notes.0002_add_extra, notes.0003_drop_extra (a rollback does "
                                  "not undo migrations); nothing was changed. If that release works on this schema, "
                                  "pass --yes")
    assert ship.Site(e).get("/")[1] != e.v1
    out = inv(e, "rollback", "--env", "lab", "--to", e.v1, "--yes")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert ship.Site(e).get("/")[1] == e.v1 and "ops-env-note-kept" in e.site.notes()


def own_blobs(cfg, tag) -> list:
    """The blob files on the lab registry's disk that only tag's image has: its manifest and its config."""
    import json

    from deploy.lab import registry_gc
    from deploy.ship import registry

    digest = registry.manifest_digest(cfg, tag)
    with registry.request(cfg, f"/v2/{cfg.app_image}/manifests/{digest}") as resp:
        config = json.loads(resp.read())["config"]["digest"]
    return [registry_gc.blob_file(digest), registry_gc.blob_file(config)]


def blob_sizes() -> dict:
    """{blob file: bytes} of the lab registry's storage."""
    from deploy.lab import registry

    return {f: f.stat().st_size for f in (registry.DATA / "docker" / "registry" / "v2" / "blobs").rglob("data")}


def test_prune_refused_while_a_deploy_holds_the_lock(labenv):
    e = labenv
    lock = f"/var/lib/djdeploy/{e.stack}/lock"
    os.mkdir(lock)
    try:
        with open(f"{lock}/owner", "w") as fh:
            fh.write("alice@laptop pid=7 action=deploy since=2026-12-01T00:00:00Z\n")
        out = inv(e, "prune", "--env", "lab", "--keep", "1")
    finally:
        shutil.rmtree(lock)
    assert out.returncode == 1 and out.stderr.strip() == (
        f"error: prune refused: the deploy lock {lock} is held by: alice@laptop pid=7 action=deploy "
        "since=2026-12-01T00:00:00Z; wait for that deploy to finish (or `inv unlock --env lab` if it is stale)")


def test_prune_keeps_rollback_targets_and_removes_the_rest_on_the_node_and_in_the_registry(labenv):
    from deploy.lab import paths
    from deploy.ops import prune_registry

    e = labenv
    cfg = e.cfg()
    tags = {t.rsplit("-", 1)[1]: t for t in e.tags}
    old = [tags[n] for n in tags if n not in ("v1", "v5")]  # v2 v3 v4 (and `full` when it ran)
    for tag in old:  # the laptop's build tags: in the lab, the laptop and the manager share one engine
        ship.docker("rmi", f"djapp:{tag}", check=False)
    before_tags = set(prune_registry.tags(cfg))
    digests = prune_registry.digests(cfg, sorted(before_tags))
    # A digest goes only if every tag on it is an old one: v4 (refused) is built exactly like v5 (kept), so they
    # are one image; another environment's identical build would share a digest too.
    shared = [t for t in old if any(d == digests[t] and u not in old for u, d in digests.items())]
    deleted = [t for t in old if t not in shared]
    assert set(e.tags) <= before_tags and deleted
    dry = inv(e, "prune", "--env", "lab", "--keep", "2", "--dry-run")
    print(dry.stdout[-3000:], dry.stderr[-2000:])
    assert dry.returncode == 0 and re.search(rf"^  would (remove|untag) {paths.REGISTRY}/djapp:{deleted[0]} ",
                                             dry.stdout, re.M), dry.stdout  # untag: v2 is the parent of v4/v5
    assert "would delete djapp:" in dry.stdout and before_tags <= set(prune_registry.tags(cfg))
    assert ship.docker("image", "inspect", f"{paths.REGISTRY}/djapp:{deleted[0]}", check=False).returncode == 0
    gone_files = {f for tag in deleted for f in own_blobs(cfg, tag)}  # (v2 and v3 are one image)
    kept_files = [f for tag in (e.v1, tags["v5"]) for f in own_blobs(cfg, tag)]
    sizes_before = blob_sizes()
    out = inv(e, "prune", "--env", "lab", "--keep", "2")
    print(out.stdout[-3000:], out.stderr[-2000:])
    assert out.returncode == 0 and f"keeping releases: {e.v1}, {tags['v5']}" in out.stdout
    node = re.search(r"^node (\S+): removed (\d+) image\(s\) and (\d+) tag\(s\), \d+ stopped task container\(s\), "
                     r"freed", out.stdout, re.M)
    assert node and int(node.group(2)) + int(node.group(3)) >= 2, out.stdout
    for tag in old:  # removed, or (an image a kept release shares) untagged
        assert ship.docker("image", "inspect", f"{paths.REGISTRY}/djapp:{tag}", check=False).returncode == 1
    for tag in (e.v1, tags["v5"]):
        assert ship.docker("image", "inspect", f"{paths.REGISTRY}/djapp:{tag}", check=False).returncode == 0
    after_tags = set(prune_registry.tags(cfg))  # (other test runs may push meanwhile: compare what was there)
    # (a rollback's <tag>-static tag, asset bridging, belongs to its release: it goes with it)
    assert {prune_registry.release_of(t) for t in before_tags - after_tags} == set(deleted), \
        "prune deleted another tag than this environment's old ones"
    assert {e.v1, tags["v5"], *shared} <= after_tags  # a digest a kept release points to is never deleted
    gc = re.search(r"^lab registry garbage collection: removed (\d+) blob\(s\), freed (.+)$", out.stdout, re.M)
    assert gc and int(gc.group(1)) > 0, out.stdout
    assert not [f for f in gone_files if f.exists()] and all(f.exists() for f in kept_files)
    sizes_after = blob_sizes()
    still = sum(size for path, size in sizes_before.items() if path in sizes_after)
    print(f"registry blobs: {sum(sizes_before.values())} -> {sum(sizes_after.values())} bytes in all; "
          f"the blobs there before prune: {sum(sizes_before.values())} -> {still}")
    assert sum(sizes_before.values()) - still >= sum(sizes_before[f] for f in gone_files) > 0
    assert not os.path.exists(f"/var/lib/djdeploy/{e.stack}/lock")
    assert ship.docker("service", "ls", "-q", "--filter", f"name={e.stack}_prune").stdout.strip() == ""
    back = inv(e, "rollback", "--env", "lab", "--to", tags["v5"])
    assert back.returncode == 0, back.stdout[-2000:] + back.stderr[-2000:]
    assert ship.Site(e).get("/")[1] == tags["v5"]
    back = inv(e, "rollback", "--env", "lab", "--to", e.v1, "--yes")
    assert back.returncode == 0 and ship.Site(e).get("/")[1] == e.v1
