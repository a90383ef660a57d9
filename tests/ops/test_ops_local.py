"""Backups of the local compose stack, for real: the round trip (notes back after a restore), the
checksum and missing-name refusals (nothing changed), and a full disk (no partial backup left)."""

from __future__ import annotations

import os
import subprocess

import pytest

import ops_ship_helpers as ship

pytestmark = pytest.mark.engine


def notes(local) -> str:
    return ship.Site(local).notes()


def delete_notes(local) -> None:
    local.inv("shell", "--django", "-c", "from notes.models import Note; print(Note.objects.all().delete())")


def backup_name(out) -> str:
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("backup ")][-1]
    return line.split()[1]


def test_round_trip_notes_come_back(local):
    site = ship.Site(local)
    site.add_note("ops-local-note-1")
    out = local.inv("db.backup")
    name = backup_name(out)
    files = sorted(os.listdir(local.backups))
    assert files == [name, name + ".meta"]
    assert oct(os.stat(local.backups / name).st_mode & 0o777) == "0o600"
    listing = local.inv("db.backups").stdout
    assert name in listing and "manual" in listing
    delete_notes(local)
    assert "ops-local-note-1" not in notes(local)
    refused = local.inv("db.restore", name, check=False)
    assert refused.returncode == 1 and "pass --yes to confirm" in refused.stderr
    assert "ops-local-note-1" not in notes(local)
    local.inv("db.restore", name, "--yes")
    assert "ops-local-note-1" in notes(local)


def test_corrupt_and_missing_backups_change_nothing(local):
    site = ship.Site(local)
    site.add_note("ops-local-note-2")
    name = backup_name(local.inv("db.backup"))
    site.add_note("ops-local-note-after")
    path = local.backups / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    out = local.inv("db.restore", name, "--yes", check=False)
    assert out.returncode == 1
    assert out.stderr.strip() == (f"error: backup {name} in {local.backups} on this machine is truncated or corrupt "
                                  f"({len(data) // 2} bytes, its sidecar says {len(data)}); nothing was changed; "
                                  f"pick another backup from `inv db.backups`")
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    out = local.inv("db.restore", name, "--yes", check=False)
    assert out.returncode == 1 and "is corrupt (sha256 " in out.stderr
    missing = "20990101T000000Z-nope.dump"
    out = local.inv("db.restore", missing, "--yes", check=False)
    assert out.stderr.strip() == (f"error: no backup {missing} in {local.backups} on this machine; "
                                  f"list them with `inv db.backups`")
    assert "ops-local-note-after" in notes(local)
    path.write_bytes(data)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_full_disk_leaves_no_backup(local, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    ship.Site(local).add_note("x" * 500)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12k,mode=0700", "tmpfs", str(small)], check=True)
    try:
        out = local.inv("db.backup", check=False, DJDEPLOY_BACKUP_DIR=str(small))
        assert out.returncode == 1
        assert out.stderr.strip() == (f"error: backup of the local stack (project {local.project}) failed: the disk "
                                      f"holding {small} is full; no backup was written (partial files removed); "
                                      f"free space or fix the cause, then `inv db.backup`")
        assert os.listdir(small) == []
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_local_createsuperuser_reads_the_password_from_the_environment(local):
    import secrets

    password = secrets.token_urlsafe(16)
    out = local.inv("manage", "--", "createsuperuser", "--noinput", DJANGO_SUPERUSER_USERNAME="opslocal",
                    DJANGO_SUPERUSER_EMAIL="l@example.com", DJANGO_SUPERUSER_PASSWORD=password)
    assert password not in out.stdout + out.stderr
    check = local.inv("shell", "--django", "-c",
                      f"from django.contrib.auth import authenticate; print('auth', bool(authenticate("
                      f"username='opslocal', password='{password}')))")
    assert "auth True" in check.stdout
