"""Backup and restore times of a >= 1 GB database, with the toolkit's own steps (deploy.ops.backups).

A private network and a Postgres container (the lab's postgres:17-trixie) are created, a table is filled
until the database is at least --size-gb, then `backups.take` (pg_dump -Fc in a one-off container, checksum
sidecar, atomic rename) and `backups.restore` (checksum, schema check, pg_restore --clean --if-exists
--single-transaction) run --runs times each. Everything is labelled djdeploy.bench=backup and removed.

    python bench/backup_restore.py [--size-gb 1.0] [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.core.runner import Runner  # noqa: E402
from deploy.ops import backups  # noqa: E402
from deploy.ops.target import Target  # noqa: E402

LABEL = "djdeploy.bench=backup"
IMAGE = "postgres:17-trixie"


def sh(*argv, check=True, stdin=None):
    return subprocess.run(list(argv), check=check, capture_output=True, text=True, input=stdin)


def psql(name: str, sql: str) -> str:
    return sh("docker", "exec", name, "psql", "-U", "bench", "-d", "bench", "-XAtqc", sql).stdout.strip()


class Site:
    host = "this machine"
    timeout = 7200.0

    def __init__(self, target):
        from invoke import Context

        self.target = target
        self.run = Runner(ctx=Context(), secrets=(target.password,), echo=False, out=io.StringIO())

    def release(self):
        return "bench"

    @contextlib.contextmanager
    def maintenance(self):
        yield


def fill(name: str, size_gb: float) -> int:
    psql(name, "create table if not exists django_migrations (id serial primary key, app text, name text, "
               "applied timestamptz default now()); insert into django_migrations (app, name) values ('notes', '0001_initial')")
    psql(name, "create table big (id bigint primary key, payload text)")
    rows, batch = 0, 1_000_000
    while int(psql(name, "select pg_database_size('bench')")) < size_gb * 1024 ** 3:
        psql(name, f"insert into big select g, md5(g::text) || md5(random()::text) || md5(random()::text) "
                   f"from generate_series({rows + 1}, {rows + batch}) g")
        rows += batch
    return int(psql(name, "select pg_database_size('bench')"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=1.0, help="minimum database size in GiB")
    parser.add_argument("--runs", type=int, default=3, help="backups and restores to time")
    args = parser.parse_args()
    tag = f"djbench{os.getpid()}"
    password = secrets.token_urlsafe(16)
    sh("docker", "network", "create", "--label", LABEL, tag)
    db = f"{tag}-db"
    tmp = Path(tempfile.mkdtemp(prefix="djbench-backups-"))
    try:
        sh("docker", "run", "-d", "--name", db, "--label", LABEL, "--network", tag, "--network-alias", "db",
           "-e", f"POSTGRES_PASSWORD={password}", "-e", "POSTGRES_USER=bench", "-e", "POSTGRES_DB=bench", IMAGE)
        deadline = time.monotonic() + 120
        while sh("docker", "exec", db, "pg_isready", "-h", "127.0.0.1", "-U", "bench", check=False).returncode:
            if time.monotonic() > deadline:
                raise SystemExit("postgres did not become ready")
            time.sleep(0.5)
        started = time.monotonic()
        size = fill(db, args.size_gb)
        print(f"database: {size / 1024 ** 3:.2f} GiB in {time.monotonic() - started:.0f}s")
        site = Site(Target(env="", label=tag, network=tag, backup_dir=str(tmp), postgres_image=IMAGE,
                           db_user="bench", db_name="bench", password=password))
        dumps, restores, metas = [], [], []
        for i in range(args.runs):
            t0 = time.monotonic()
            meta = backups.take(site, out=io.StringIO())
            dumps.append(time.monotonic() - t0)
            metas.append(meta)
            time.sleep(1.1)  # names have a 1-second stamp
            print(f"backup {i + 1}: {dumps[-1]:.1f}s, {meta.size / 1024 ** 2:.0f} MiB")
        for i in range(args.runs):
            t0 = time.monotonic()
            backups.restore(site, metas[-1].name, lambda what: None, out=io.StringIO())
            restores.append(time.monotonic() - t0)
            print(f"restore {i + 1}: {restores[-1]:.1f}s")
        rows = psql(db, "select count(*) from big")
        print(f"RESULT database_gib={size / 1024 ** 3:.2f} dump_mib={metas[-1].size / 1024 ** 2:.0f} rows={rows} "
              f"backup_median_s={statistics.median(dumps):.1f} restore_median_s={statistics.median(restores):.1f} "
              f"backup_runs={[round(d, 1) for d in dumps]} restore_runs={[round(r, 1) for r in restores]}")
    finally:
        sh("docker", "rm", "-f", "-v", db, check=False)
        sh("docker", "network", "rm", tag, check=False)
        sh("rm", "-rf", str(tmp), check=False)


if __name__ == "__main__":
    main()
