"""Off-site copies of the backups (BACKUP_S3_*): the settings and every error message, the backup service's spec
(credentials as Swarm secrets only), the one-off `list` command, the OFFSITE column, and the Perl client itself
(deploy/ops/s3copy.pl, run with the host's perl): SigV4 against AWS's published examples, the retention rule,
and a sync against an unreachable store and a refusing one (ERROR lines, local files untouched)."""

from __future__ import annotations

import datetime
import hashlib
import http.server
import io
import os
import subprocess
import threading

import pytest
from invoke import Result

from shipfakes import config_problems, env_line as where, make_cfg

from deploy.core.runner import Runner
from deploy.ops import backup, backup_image, offsite, schedule
from deploy.ship import stackfile

ON = ("BACKUP_SCHEDULE=on\nBACKUP_S3_BUCKET=djt-backups\nBACKUP_S3_ENDPOINT=http://s3:5000/\n"
      "BACKUP_S3_ACCESS_KEY_ID=AKIDTEST\nBACKUP_S3_SECRET_ACCESS_KEY_FILE=s3secret\n")
EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def cfg_on(tmp_path, extra: str = ""):
    (tmp_path / "s3secret").write_text("s3-very-secret\n")
    return make_cfg(tmp_path, ON + extra)


def problems(tmp_path, extra: str) -> list:
    (tmp_path / "s3secret").write_text("s3-very-secret\n")
    return config_problems(tmp_path, extra)


def test_settings_defaults_and_secrets(tmp_path):
    cfg = cfg_on(tmp_path)
    assert (cfg.offsite, cfg.backup_s3_bucket, cfg.backup_s3_endpoint, cfg.backup_s3_region, cfg.backup_s3_prefix) == (
        True, "djt-backups", "http://s3:5000", "us-east-1", "backups/djt")
    assert (cfg.backup_s3_access_key_id, cfg.backup_s3_secret_access_key) == ("AKIDTEST", "s3-very-secret")
    assert {"AKIDTEST", "s3-very-secret"} <= set(cfg.secrets) and cfg.offsite_url == "s3://djt-backups/backups/djt/"
    other = make_cfg(tmp_path, ON.replace("BACKUP_S3_ENDPOINT=http://s3:5000/\n", "") +
                     "BACKUP_S3_REGION=eu-west-3\nBACKUP_S3_PREFIX=/prod/db/\n")
    assert (other.backup_s3_endpoint, other.backup_s3_prefix) == ("https://s3.eu-west-3.amazonaws.com", "prod/db")
    off = make_cfg(tmp_path, "")
    assert (off.offsite, off.backup_s3_bucket) == (False, "")


def test_every_settings_error_is_one_line_naming_the_key(tmp_path):
    bad = ("BACKUP_SCHEDULE=on\nBACKUP_S3_BUCKET=Bad_Bucket\nBACKUP_S3_ENDPOINT=s3.example.com/path\n"
           "BACKUP_S3_REGION=EU West\nBACKUP_S3_PREFIX=a//b\n")
    found = problems(tmp_path, bad)
    expect = [
        f"{where(tmp_path, 'BACKUP_S3_BUCKET')}: BACKUP_S3_BUCKET must be a bucket name: 3-63 lowercase letters, "
        "digits, '.' or '-' (got 'Bad_Bucket')",
        f"{where(tmp_path, 'BACKUP_S3_ENDPOINT')}: BACKUP_S3_ENDPOINT must be http:// or https:// with a host[:port] "
        "and no path (got 's3.example.com/path')",
        f"{where(tmp_path, 'BACKUP_S3_REGION')}: BACKUP_S3_REGION must be a region name like us-east-1 (got 'EU West')",
        f"{where(tmp_path, 'BACKUP_S3_PREFIX')}: BACKUP_S3_PREFIX must be a key prefix like backups/prod "
        "('/'-separated letters, digits, '.', '_', '-') (got 'a//b')",
        f"{where(tmp_path, 'BACKUP_S3_BUCKET')}: BACKUP_S3_BUCKET needs BACKUP_S3_ACCESS_KEY_ID "
        "(or BACKUP_S3_ACCESS_KEY_ID_FILE=path)",
        f"{where(tmp_path, 'BACKUP_S3_BUCKET')}: BACKUP_S3_BUCKET needs BACKUP_S3_SECRET_ACCESS_KEY "
        "(or BACKUP_S3_SECRET_ACCESS_KEY_FILE=path)",
    ]
    for line in expect:
        assert line in found
    found = problems(tmp_path, ON.replace("BACKUP_SCHEDULE=on\n", ""))
    assert (f"{where(tmp_path, 'BACKUP_S3_BUCKET')}: BACKUP_S3_BUCKET needs BACKUP_SCHEDULE=on (the backup "
            "service makes the off-site copies)") in found
    found = problems(tmp_path, "BACKUP_S3_ENDPOINT=http://s3:5000\n")
    assert (f"{where(tmp_path, 'BACKUP_S3_ENDPOINT')}: BACKUP_S3_ENDPOINT is set but BACKUP_S3_BUCKET is empty; set "
            "the bucket to copy backups off-site, or remove the BACKUP_S3_* keys") in found
    found = problems(tmp_path, "BACKUP_S3_BUCKT=x\n")
    assert any("unknown key BACKUP_S3_BUCKT" in line for line in found)


def test_the_backup_service_gets_the_store_and_its_credentials_as_secrets_only(tmp_path):
    cfg = cfg_on(tmp_path)
    svc = schedule.service(cfg, "v1")
    env = svc["environment"]
    assert (env["S3_ENDPOINT"], env["S3_BUCKET"], env["S3_PREFIX"], env["S3_REGION"]) == (
        "http://s3:5000", "djt-backups", "backups/djt", "us-east-1")
    assert env["S3_SCRIPT"] == offsite.script().replace("$", "$$")    # the stack file interpolates $
    assert svc["secrets"] == [{"source": "postgres_password", "target": "postgres_password"},
                              {"source": "backup_s3_key_id", "target": "backup_s3_key_id"},
                              {"source": "backup_s3_secret", "target": "backup_s3_secret"}]
    assert 'perl -e "$$S3_SCRIPT" sync' in svc["entrypoint"][2]
    spec = stackfile.stack_spec(cfg, "img", "v1", "r", "p")
    names = stackfile.secret_names(cfg)
    assert spec["secrets"]["backup_s3_secret"] == {"external": True,
                                                             "name": names["backup_s3_secret"]}
    assert all(len(names[k]) <= len(names["django_secret_key"]) for k in offsite.SECRETS)  # Docker's 64 fit as well
    text = stackfile.render(spec)
    assert "s3-very-secret" not in text and "AKIDTEST" not in text
    assert stackfile.secret_values(cfg)["backup_s3_key_id"] == "AKIDTEST"
    off = make_cfg(tmp_path, "BACKUP_SCHEDULE=on\n")
    plain = schedule.service(off, "v1")
    assert not any(k.startswith("S3_") for k in plain["environment"]) and len(plain["secrets"]) == 1
    assert "backup_s3_key_id" not in stackfile.secret_values(off)


def test_list_command_and_its_parsing(tmp_path):
    from deploy.ops.target import from_env

    cfg = cfg_on(tmp_path)
    t = from_env(cfg)
    argv = offsite.list_cmd(cfg, t)
    assert argv == ["docker", "--config", t.docker_config, "run", "--rm", "-i", "--network", "djt_backend",
                    "--label", "djdeploy.stack=djt", "--label", "djdeploy.role=offsite-list",
                    "--env", "S3_CREDENTIALS=stdin", "--env", "S3_ENDPOINT=http://s3:5000",
                    "--env", "S3_BUCKET=djt-backups", "--env", "S3_PREFIX=backups/djt", "--env", "S3_REGION=us-east-1",
                    "--entrypoint", "perl", backup_image.ref(cfg), "-", "list"]   # POSTGRES_IMAGE + Perl's TLS
    assert offsite.list_stdin(cfg) == offsite.script() + "\n__END__\nAKIDTEST\ns3-very-secret\n"
    assert "s3-very-secret" not in " ".join(argv)
    keys = ("backups/djt/scheduled/20261201T000000Z-v1.dump\nbackups/djt/scheduled/20261201T000000Z-v1.dump.meta\n"
            "backups/djt/manual/20261130T000000Z-v0.dump.meta\nbackups/djt/scheduled/20261129T000000Z-v0.dump\n"
            "backups/other/manual/20261128T000000Z-x.dump.meta\n")
    assert offsite.copies("backups/djt", keys) == {"20261201T000000Z-v1.dump", "20261130T000000Z-v0.dump"}


class FakeSite:
    def __init__(self, cfg, result):
        from deploy.ops.target import from_env

        self.cfg, self.target, self.calls = cfg, from_env(cfg), []
        outer = self

        class Ctx:
            def run(self, command, **kw):
                outer.calls.append((command, kw["in_stream"].read()))
                return result

        self.run = Runner(ctx=Ctx(), secrets=cfg.secrets, out=io.StringIO())


def test_listing_through_the_runner_and_the_offsite_column(tmp_path):
    cfg = cfg_on(tmp_path)
    site = FakeSite(cfg, Result(stdout="backups/djt/scheduled/20261201T091700Z-abc1234.dump.meta\n"))
    assert offsite.listing(site) == {"20261201T091700Z-abc1234.dump"}
    assert site.calls[0][1].endswith("\n__END__\nAKIDTEST\ns3-very-secret\n")
    failing = FakeSite(cfg, Result(stdout="", stderr="cannot reach http://s3:5000: refused\n", exited=2))
    assert offsite.listing(failing) == "cannot reach http://s3:5000: refused"
    metas = [backup.Meta("20261201T091700Z-abc1234.dump", "", "abc1234", "manual", 10, "a" * 64, ()),
             backup.Meta("20261202T091700Z-abc1234.dump", "", "abc1234", "scheduled", 10, "b" * 64, ())]
    lines = backup.table(metas, now=0, offsite={"20261201T091700Z-abc1234.dump"}).splitlines()
    assert lines[0].endswith("REASON     OFFSITE") and lines[1].endswith("manual     yes")
    assert lines[2].endswith("scheduled  no")
    assert "OFFSITE" not in backup.table(metas, now=0)


# ---- the Perl client, on the host's perl (git depends on it) ------------------------------------------------

def perl(*args, env=None, stdin="AKIDTEST\nsecret\n", timeout=60):
    return subprocess.run(["perl", str(offsite.SCRIPT), *args], input=stdin, text=True, capture_output=True,
                          env={"PATH": os.environ["PATH"], "S3_CREDENTIALS": "stdin", **(env or {})}, timeout=timeout)


def test_the_script_compiles_and_signs_like_aws_documents():
    assert subprocess.run(["perl", "-c", str(offsite.SCRIPT)], capture_output=True).returncode == 0
    common = ["20130524T000000Z", EMPTY, "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
              "us-east-1", "host=examplebucket.s3.amazonaws.com", f"x-amz-content-sha256={EMPTY}",
              "x-amz-date=20130524T000000Z"]
    # AWS's "GET Object" and "GET Bucket (List Objects)" examples of Signature Version 4 for S3
    out = perl("sign", "GET", "/test.txt", "", *common, "range=bytes=0-9").stdout.strip()
    assert out == ("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
                   "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                   "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    out = perl("sign", "GET", "/", "max-keys=2&prefix=J", *common).stdout.strip()
    assert out.endswith("Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")


def expected_kept(names: list, daily: int, weekly: int) -> set:
    """The rule, independently (as tests/ops/test_ops_schedule.py states it for the local loop): newest first,
    the first of each day and of each ISO week while slots remain."""
    days, weeks, kept = [], [], set()
    for n in sorted(names, reverse=True):
        day = datetime.datetime.strptime(n[:8], "%Y%m%d").date()
        if day not in days and len(days) < daily:
            days.append(day)
            kept.add(n)
        if day.isocalendar()[:2] not in weeks and len(weeks) < weekly:
            weeks.append(day.isocalendar()[:2])
            kept.add(n)
    return kept


def test_the_retention_rule_is_the_local_loops():
    now = datetime.datetime(2026, 12, 1, 9, 0, tzinfo=datetime.timezone.utc)
    names = [(now - datetime.timedelta(days=d, hours=h)).strftime("%Y%m%dT%H%M%SZ") + "-v1.dump"
             for d, h in ((0, 0), (0, 2), (1, 0), (1, 5), (3, 0), (8, 0), (9, 0), (16, 0), (40, 0))]
    for daily, weekly in ((2, 3), (1, 0), (7, 4)):
        out = perl("doomed", *names, env={"KEEP_DAILY": str(daily), "KEEP_WEEKLY": str(weekly)}).stdout.split()
        assert set(out) == set(names) - expected_kept(names, daily, weekly)


def backups_dir(tmp_path, sidecar_sum=None) -> str:
    body = b"dump bytes"
    name = "20261201T091700Z-v1.dump"
    (tmp_path / name).write_bytes(body)
    (tmp_path / f"{name}.meta").write_text(f"name={name}\nreason=manual\nsize={len(body)}\n"
                                           f"sha256={sidecar_sum or hashlib.sha256(body).hexdigest()}\n")
    return name


def test_sync_with_the_store_unreachable_logs_an_error_and_keeps_the_local_backup(tmp_path):
    name = backups_dir(tmp_path)
    env = {"BACKUP_DIR": str(tmp_path), "S3_ENDPOINT": "http://127.0.0.1:1", "S3_BUCKET": "b", "S3_PREFIX": "p",
           "S3_REGION": "us-east-1", "KEEP_DAILY": "7", "KEEP_WEEKLY": "4"}
    out = perl("sync", env=env)
    assert out.returncode == 1
    assert out.stdout.startswith("backup: ERROR off-site copy to s3://b/p/ failed: cannot reach http://127.0.0.1:1: ")
    assert out.stdout.rstrip().endswith("(the local backups are kept; retrying next round)")
    assert sorted(os.listdir(tmp_path)) == [name, f"{name}.meta"]
    https = perl("sync", env=dict(env, S3_ENDPOINT="https://127.0.0.1:1"))   # no TLS in this perl, or no answer
    assert https.returncode == 1 and "ERROR" in https.stdout


class Store(http.server.BaseHTTPRequestHandler):
    """Lists nothing, refuses PUTs with S3's AccessDenied, records the requests."""

    seen: list = []

    def do_GET(self):  # noqa: N802
        self.seen.append(("GET", self.path, self.headers.get("Authorization", "")))
        body = b"<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self):  # noqa: N802
        self.seen.append(("PUT", self.path, self.headers.get("x-amz-content-sha256", "")))
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b"<Error><Code>AccessDenied</Code><Message>no</Message></Error>"
        self.send_response(403)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def store():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Store)
    Store.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def test_sync_against_a_refusing_store_and_a_corrupt_local_backup(tmp_path, store):
    name = backups_dir(tmp_path)
    env = {"BACKUP_DIR": str(tmp_path), "S3_ENDPOINT": f"http://127.0.0.1:{store}", "S3_BUCKET": "b",
           "S3_PREFIX": "backups/djt", "S3_REGION": "us-east-1", "KEEP_DAILY": "7", "KEEP_WEEKLY": "4"}
    out = perl("sync", env=env)
    assert out.returncode == 1
    assert out.stdout == (f"backup: ERROR off-site copy of {name} to s3://b/backups/djt/manual/{name} failed: "
                          "HTTP 403 AccessDenied (the local backup is kept; retrying next round)\n")
    get, put = Store.seen
    assert get[:2] == ("GET", "/b?list-type=2&prefix=backups%2Fdjt%2F")
    assert get[2].startswith("AWS4-HMAC-SHA256 Credential=AKIDTEST/") and "secret" not in get[2]
    assert put == ("PUT", f"/b/backups/djt/manual/{name}", hashlib.sha256(b"dump bytes").hexdigest())
    assert sorted(os.listdir(tmp_path)) == [name, f"{name}.meta"]
    Store.seen = []
    backups_dir(tmp_path, sidecar_sum="0" * 64)
    out = perl("sync", env=env)
    assert out.stdout == (f"backup: ERROR off-site copy of {name} skipped: the local file does not match its "
                          "sidecar (size or sha256)\n")
    assert [s[0] for s in Store.seen] == ["GET"]


def test_the_one_off_list_reads_script_then_credentials_from_stdin(store):
    from types import SimpleNamespace

    cfg = SimpleNamespace(backup_s3_access_key_id="AKIDTEST", backup_s3_secret_access_key="secret")
    env = {"PATH": os.environ["PATH"], "S3_CREDENTIALS": "stdin", "S3_ENDPOINT": f"http://127.0.0.1:{store}",
           "S3_BUCKET": "b", "S3_PREFIX": "backups/djt", "S3_REGION": "us-east-1"}
    out = subprocess.run(["perl", "-", "list"], input=offsite.list_stdin(cfg), text=True, capture_output=True,
                         env=env, timeout=60)
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")
    assert Store.seen[0][2].startswith("AWS4-HMAC-SHA256 Credential=AKIDTEST/")
    # S3_CA_FILE=-: the CA's PEM follows the credentials (read after them; the request is still signed by AKIDTEST)
    Store.seen = []
    cfg.backup_s3_ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    out = subprocess.run(["perl", "-", "list"], input=offsite.list_stdin(cfg), text=True, capture_output=True,
                         env=dict(env, S3_CA_FILE="-"), timeout=60)
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")
    assert Store.seen[0][2].startswith("AWS4-HMAC-SHA256 Credential=AKIDTEST/")


class Keeper(Store):
    """Lists ``keys`` (in S3's XML), accepts PUTs and DELETEs, records every request."""

    keys: list = []

    def do_GET(self):  # noqa: N802
        self.seen.append(("GET", self.path))
        body = ("<ListBucketResult><IsTruncated>false</IsTruncated>"
                + "".join(f"<Contents><Key>{k}</Key></Contents>" for k in self.keys) + "</ListBucketResult>").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self):  # noqa: N802
        self.seen.append(("PUT", self.path))
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_DELETE(self):  # noqa: N802
        self.seen.append(("DELETE", self.path))
        self.send_response(204)
        self.end_headers()


def test_sync_uploads_what_is_missing_and_applies_the_retention_in_the_bucket(tmp_path):
    local = backups_dir(tmp_path)              # manual, not in the bucket yet
    s = "backups/djt/scheduled/"
    Keeper.keys = [f"{s}20261201T000000Z-a.dump", f"{s}20261201T000000Z-a.dump.meta",      # newest: kept
                   f"{s}20261130T000000Z-b.dump", f"{s}20261130T000000Z-b.dump.meta",      # day 2: kept
                   f"{s}20261129T000000Z-c.dump", f"{s}20261129T000000Z-c.dump.meta",      # beyond: removed
                   f"{s}20261128T000000Z-d.dump",                       # a half copy, no local file: removed
                   "backups/djt/manual/20200101T000000Z-m.dump", "backups/djt/manual/20200101T000000Z-m.dump.meta"]
    Keeper.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Keeper)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {"BACKUP_DIR": str(tmp_path), "S3_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
               "S3_BUCKET": "b", "S3_PREFIX": "backups/djt", "S3_REGION": "us-east-1", "KEEP_DAILY": "2",
               "KEEP_WEEKLY": "1"}
        out = perl("sync", env=env)
    finally:
        server.shutdown()
    assert out.returncode == 0, out.stdout + out.stderr
    assert Keeper.seen[:3] == [("GET", "/b?list-type=2&prefix=backups%2Fdjt%2F"),
                               ("PUT", f"/b/backups/djt/manual/{local}"), ("PUT", f"/b/backups/djt/manual/{local}.meta")]
    assert sorted(Keeper.seen[3:]) == [("DELETE", f"/b/{s}20261128T000000Z-d.dump"),
                                       ("DELETE", f"/b/{s}20261129T000000Z-c.dump"),
                                       ("DELETE", f"/b/{s}20261129T000000Z-c.dump.meta")]
    c = [p for _, p in Keeper.seen[3:] if "-c." in p]
    assert c == [f"/b/{s}20261129T000000Z-c.dump.meta", f"/b/{s}20261129T000000Z-c.dump"]   # the sidecar first
    assert out.stdout.splitlines()[0] == (f"backup: off-site copy {local} -> s3://b/backups/djt/manual/{local} "
                                          f"(sha256 {hashlib.sha256(b'dump bytes').hexdigest()[:12]})")
    assert sorted(out.stdout.splitlines()[1:]) == ["backup: off-site retention removed 20261128T000000Z-d.dump",
                                                   "backup: off-site retention removed 20261129T000000Z-c.dump"]
    assert sorted(os.listdir(tmp_path)) == [local, f"{local}.meta"]
