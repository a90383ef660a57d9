"""The scheduled backup loop (deploy.ops.schedule) for real: the exact service script and environment of the
stack file, in a container of the Postgres image on the local test project's network. It takes a backup
when the newest scheduled one is too old, and applies the daily/weekly retention (manual ones stay)."""

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


def test_loop_takes_a_backup_when_due_and_applies_retention(local, tmp_path):
    from deploy.ops import schedule

    d = tmp_path / "backups"
    d.mkdir()
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    old = [seed(d, now - datetime.timedelta(days=n, hours=h), "scheduled") for n, h in
           ((1, 1), (1, 3), (2, 0), (9, 0), (10, 0), (30, 0))]
    manual = seed(d, now - datetime.timedelta(days=40), "manual")
    cfg = SimpleNamespace(env="lab", stack_name="x", remote_dir="/r", postgres_image="postgres:17-trixie",
                          postgres_password="", backup_interval=3600, backup_keep_daily=2, backup_keep_weekly=3)
    svc = schedule.service(cfg, "v9")
    env = {k: v.replace("$$", "$") for k, v in svc["environment"].items()}
    env.update(PGUSER="djapp", PGDATABASE="djapp", BACKUP_POLL="1")
    (tmp_path / "pw").write_text(local.password)
    name = f"djops-schedule-{os.getpid()}"
    argv = ["docker", "run", "-d", "--name", name, "--label", "djdeploy.test=ops", "--network",
            f"{local.project}_default", "--volume", f"{d}:/backups", "--volume", f"{tmp_path}/pw:/run/secrets/postgres_password:ro"]
    for k, v in env.items():
        argv += ["--env", f"{k}={v}"]
    argv += ["--entrypoint", "sh", svc["image"], "-c", svc["entrypoint"][2].replace("$$", "$")]
    subprocess.run(argv, check=True, capture_output=True, text=True)
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
