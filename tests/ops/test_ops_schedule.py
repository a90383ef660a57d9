"""The scheduled backup loop (deploy.ops.schedule) for real: the exact service script and environment of the
stack file, in a container of the service's image (the Postgres image; with off-site copies the backup image, built
here as a deploy builds it) on the local test project's network. It takes a backup when the newest scheduled one
is too old, and applies the daily/weekly retention (manual ones stay); off-site copies go over HTTPS."""

from __future__ import annotations

import datetime
import os
import subprocess
import time
from types import SimpleNamespace

import pytest

import ops_ship_helpers as ship

pytestmark = pytest.mark.engine


def seed(d, when: datetime.datetime, reason: str) -> str:
    name = when.strftime("%Y%m%dT%H%M%SZ") + "-old.dump"
    (d / name).write_bytes(b"x")
    (d / f"{name}.meta").write_text(f"name={name}\nreason={reason}\nsize=1\nsha256=-\nmigrations=\n")
    for f in (d / name, d / f"{name}.meta"):
        os.utime(f, (when.timestamp(), when.timestamp()))
    return name


def expected_kept(names: list, daily: int, weekly: int) -> set:
    """The retention rule, independently: newest first, the first of each day/ISO week while slots remain."""
    days, weeks, kept = [], [], set()
    for n in sorted(names, reverse=True):
        day = datetime.datetime.strptime(n[:8], "%Y%m%d").date()
        week = day.isocalendar()[:2]
        if day not in days and len(days) < daily:
            days.append(day)
            kept.add(n)
        if week not in weeks and len(weeks) < weekly:
            weeks.append(week)
            kept.add(n)
    return kept


def start_loop(local, tmp_path, cfg, name: str, secrets: dict, image: str = "") -> None:
    """The backup service's container, as the stack file defines it, on the local project's network (poll: 1 s);
    ``image``: a local build of the service's image (the stack names its registry ref)."""
    from deploy.ops import schedule

    svc = schedule.service(cfg, "v9")
    env = {k: v.replace("$$", "$") for k, v in svc["environment"].items()}
    env.update(PGUSER="djapp", PGDATABASE="djapp", BACKUP_POLL="1")
    argv = ["docker", "run", "-d", "--name", name, "--label", "djdeploy.test=ops", "--network",
            f"{local.project}_default", "--volume", f"{tmp_path / 'backups'}:/backups"]
    for key, value in {"postgres_password": local.password, **secrets}.items():
        (tmp_path / key).write_text(value)
        argv += ["--volume", f"{tmp_path / key}:/run/secrets/{key}:ro"]
    for k, v in env.items():
        argv += ["--env", f"{k}={v}"]
    argv += ["--entrypoint", "sh", image or svc["image"], "-c", svc["entrypoint"][2].replace("$$", "$")]
    subprocess.run(argv, check=True, capture_output=True, text=True)


def loop_cfg(**kw):
    return SimpleNamespace(env="lab", stack_name="x", remote_dir="/r", postgres_image="postgres:17-trixie",
                           postgres_password="", backup_interval=3600, backup_keep_daily=2, backup_keep_weekly=3, **kw)


def test_loop_takes_a_backup_when_due_and_applies_retention(local, tmp_path):
    d = tmp_path / "backups"
    d.mkdir()
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    old = [seed(d, now - datetime.timedelta(days=n, hours=h), "scheduled") for n, h in
           ((1, 1), (1, 3), (2, 0), (9, 0), (10, 0), (30, 0))]
    manual = seed(d, now - datetime.timedelta(days=40), "manual")
    name = f"djops-schedule-{os.getpid()}"
    start_loop(local, tmp_path, loop_cfg(), name, {})
    try:
        deadline = time.monotonic() + 120
        new = []
        while time.monotonic() < deadline and not new:
            new = [n for n in os.listdir(d) if n.endswith("-v9.dump.meta")]
            time.sleep(0.5)
        assert new, subprocess.run(["docker", "logs", name], capture_output=True, text=True).stdout
        fresh = new[0][: -len(".meta")]
        want = expected_kept(old + [fresh], 2, 3) | {manual}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and {n for n in os.listdir(d) if n.endswith(".dump")} != want:
            time.sleep(0.5)
        logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True).stdout
        print(logs)
        assert {n for n in os.listdir(d) if n.endswith(".dump")} == want
        assert {n for n in os.listdir(d) if n.endswith(".meta")} == {n + ".meta" for n in want}
        assert "reason=scheduled" in (d / new[0]).read_text() and "release=v9" in (d / new[0]).read_text()
        assert len(want) < len(old) + 2 and "retention removed" in logs
        time.sleep(3)  # the loop polls every second: a second backup must NOT come before the interval
        assert [n for n in os.listdir(d) if n.endswith("-v9.dump")] == [fresh]
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    assert ship.Site(local).get("/")[0] == 200


class Bucket:
    """The lab store's bucket from this machine (moto takes unsigned requests): list, get, put."""

    def __init__(self, port: int, bucket: str):
        import urllib.request

        self.base = f"http://127.0.0.1:{port}/{bucket}"
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method: str, path: str = "", data: bytes | None = None) -> bytes:
        import urllib.request

        with self.opener.open(urllib.request.Request(self.base + path, data=data, method=method), timeout=10) as r:
            return r.read()

    def get(self, key: str) -> bytes:
        """A copy the loop made is private: read it signed, with the loop's own client (deploy/ops/s3copy.pl)."""
        from deploy.ops import offsite

        env = {**os.environ, "S3_ENDPOINT": self.base.rsplit("/", 1)[0], "S3_BUCKET": self.base.rsplit("/", 1)[1],
               "S3_REGION": "us-east-1", "S3_CREDENTIALS": "stdin"}
        out = subprocess.run(["perl", str(offsite.SCRIPT), "get", key], input=b"AKIDLAB\nlab-secret\n", env=env,
                             capture_output=True, timeout=30)
        assert out.returncode == 0, out.stderr.decode()
        return out.stdout

    def keys(self, prefix: str) -> set:
        import re

        return set(re.findall(r"<Key>([^<]+)</Key>", self.call("GET", f"?list-type=2&prefix={prefix}/").decode()))

    def put_backup(self, key: str, body: bytes, meta: str) -> None:
        self.call("PUT", "/" + key, body)
        self.call("PUT", "/" + key + ".meta", meta.encode())


def real_seed(d, when: datetime.datetime, reason: str, body: bytes) -> str:
    import hashlib

    name = when.strftime("%Y%m%dT%H%M%SZ") + "-old.dump"
    (d / name).write_bytes(body)
    (d / f"{name}.meta").write_text(f"name={name}\nreason={reason}\nsize={len(body)}\n"
                                    f"sha256={hashlib.sha256(body).hexdigest()}\nmigrations=\n")
    return name


def wait_until(what: str, predicate, seconds: float, logs) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}\n{logs()}")


def local_backup_image(cfg) -> str:
    """The backup image as a deploy builds it on this machine (djbackup:<recipe tag>; kept, like a deploy's)."""
    from types import SimpleNamespace

    from deploy.ops import backup_image

    spec = SimpleNamespace(backup_image="djbackup", postgres_image=cfg.postgres_image)
    tag = backup_image.recipe_tag(cfg.postgres_image)
    if subprocess.run(["docker", "image", "inspect", f"djbackup:{tag}"], capture_output=True).returncode:
        backup_image.build(spec, tag)
    return f"djbackup:{tag}"


@pytest.mark.lab
def test_offsite_copy_over_https_with_retention_a_wrong_ca_and_an_unreachable_store(local, tmp_path):
    """Over https:// (the moto stand-in behind a TLS front whose certificate a test CA signed, trusted through the
    backup_s3_ca secret, in the backup image): a scheduled backup reaches the bucket with its checksum, the bucket's
    old scheduled copies go by the retention rule (manual ones stay). With a wrong CA the copy fails with
    `certificate verify failed` in an ERROR line and the local backup stays; with the store unreachable likewise;
    each time the copy is made once the fault is gone."""
    import hashlib

    from invoke import Context

    import ops_s3tls as tls
    from deploy.core.runner import Runner
    from deploy.lab import s3
    from deploy.ops import offsite

    if subprocess.run(["docker", "image", "inspect", s3.IMAGE], capture_output=True).returncode:
        pytest.fail(f"the lab stand-in {s3.IMAGE} is missing (run `inv lab.up`)")
    d = tmp_path / "backups"
    d.mkdir()
    spec = s3.S3Spec(prefix=f"djops-s3-{os.getpid()}", labels=(("djdeploy.test", "ops"),))
    runner, network = Runner(ctx=Context(), echo=False), f"{local.project}_default"
    name, front, prefix = f"djops-offsite-{os.getpid()}", f"djops-s3tls-{os.getpid()}", "backups/x"
    ca, ca_key = tls.test_ca("store")
    try:
        bucket = Bucket(int(s3.ensure(runner, spec, bucket="djops-backups", say=lambda m: None)["endpoint"]
                            .rsplit(":", 1)[1]), "djops-backups")
        tls.start(front, spec.network, tmp_path / "tls", ca, ca_key)   # moto itself stays off the loop's network
        tls.connect(front, network)
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        old = []
        for n in (1, 2, 9, 10, 30):   # copies in the bucket only (e.g. from a previous manager)
            old.append((now - datetime.timedelta(days=n)).strftime("%Y%m%dT%H%M%SZ") + "-old.dump")
            bucket.put_backup(f"{prefix}/scheduled/{old[-1]}", b"x", "reason=scheduled\n")
        bucket.put_backup(f"{prefix}/manual/20200101T000000Z-m.dump", b"m", "reason=manual\n")
        cfg = loop_cfg(offsite=True, backup_s3_endpoint=tls.ENDPOINT, backup_s3_bucket="djops-backups",
                       backup_s3_prefix=prefix, backup_s3_region="us-east-1", backup_s3_ca=tls.pem(ca),
                       registry="127.0.0.1:5000", backup_image="djbackup", backup_s3_access_key_id="AKIDLAB",
                       backup_s3_secret_access_key="lab-secret")
        # the secrets a deploy would mount (key id, secret, the CA's PEM), each as a file under /run/secrets
        start_loop(local, tmp_path, cfg, name, offsite.secret_values(cfg), image=local_backup_image(cfg))

        def loop_logs() -> str:
            return subprocess.run(["docker", "logs", name], capture_output=True, text=True).stdout

        def logs() -> str:   # on a failure: the front's too
            return loop_logs() + f"==== {front} ====\n" + tls.logs(front)

        fresh = []
        wait_until("the scheduled backup's copy", lambda: fresh or fresh.extend(
            k for k in bucket.keys(prefix) if k.endswith("-v9.dump.meta")), 120, logs)
        key = fresh[0][: -len(".meta")]
        local_meta = (d / key.rsplit("/", 1)[1]).with_suffix(".dump.meta").read_text()
        assert key.startswith(f"{prefix}/scheduled/")
        assert bucket.get(key + ".meta").decode() == local_meta
        assert f"sha256={hashlib.sha256(bucket.get(key)).hexdigest()}\n" in local_meta
        want = {f"{prefix}/scheduled/{n}" for n in expected_kept(old + [key.rsplit("/", 1)[1]], 2, 3)}
        want |= {f"{prefix}/manual/20200101T000000Z-m.dump"}
        wait_until("the retention in the bucket", lambda: {k for k in bucket.keys(prefix)
                                                           if k.endswith(".dump")} == want, 30, logs)
        assert "off-site retention removed" in loop_logs() and "ERROR" not in loop_logs()
        assert f"off-site copies to s3://djops-backups/{prefix}/ at {tls.ENDPOINT}" in loop_logs()

        def fault_then_fixed(what: str, expect: str, fault, fix, body: bytes) -> None:
            fault()
            seen = len(loop_logs())
            manual = real_seed(d, datetime.datetime.now(datetime.timezone.utc), "manual", body)
            wait_until(what, lambda: expect in loop_logs()[seen:], 60, logs)
            line = next(x for x in loop_logs()[seen:].splitlines() if expect in x)
            print(line)
            assert line.startswith(f"backup: ERROR off-site copy to s3://djops-backups/{prefix}/ failed: cannot reach "
                                   f"{tls.ENDPOINT}: ") and "(the local backups are kept; retrying next round)" in line
            assert (d / manual).read_bytes() == body and (d / f"{manual}.meta").exists()
            assert f"{prefix}/manual/{manual}.meta" not in bucket.keys(prefix)
            fix()
            wait_until(f"the copy after {what}", lambda: f"{prefix}/manual/{manual}.meta" in bucket.keys(prefix),
                       60, logs)
            assert bucket.get(f"{prefix}/manual/{manual}") == body

        ca_file = tmp_path / "backup_s3_ca"   # the secret's file, read by each round: replaced in place
        other, _ = tls.test_ca("other")
        fault_then_fixed("a wrong CA", "certificate verify failed", lambda: ca_file.write_text(tls.pem(other)),
                         lambda: ca_file.write_text(tls.pem(ca)), b"a backup while the CA is wrong")
        fault_then_fixed("an unreachable store", "ERROR off-site copy", lambda: tls.disconnect(front, network),
                         lambda: tls.connect(front, network), b"a backup while the store is away")
        print(loop_logs())
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        tls.remove(front)
        s3.remove(runner, spec)
