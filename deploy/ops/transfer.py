"""Move a backup (the dump and its sidecar) between an environment's manager and this machine (SFTP).

Both directions write under temporary names and rename only after the checksum matched, so an
interrupted copy never looks like a backup. The local side is the local backups dir
(deploy.ops.target.local_backup_dir): `inv db.backups` lists what is there.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from deploy.core.errors import ToolkitError
from deploy.ops import backup


def file_digest(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return path.stat().st_size, h.hexdigest()


def verify_local(path: Path) -> backup.Meta:
    """A local backup file matches its sidecar, or a one-line error naming the file."""
    backup.check_name(path.name)
    meta_path = path.with_name(path.name + ".meta")
    if not path.is_file() or not meta_path.is_file():
        missing = path if not path.is_file() else meta_path
        raise ToolkitError(f"no backup {path.name} in {path.parent} ({missing.name} is missing); "
                           f"list them with `inv db.backups`")
    size, digest = file_digest(path)
    text = meta_path.read_text(encoding="utf-8") + f"actual_size={size}\nactual_sha256={digest}\n"
    return backup.verified(path.name, text, str(path.parent))


def _note(site, text: str, out) -> None:
    site.run.history.append((site.run.where, text))
    out.write(f"[{site.run.where}] {text}\n")


def download(site, name: str, local_dir: Path, out=sys.stdout) -> Path:
    """Verify on the manager, copy dump and sidecar to ``local_dir``, verify again here, then rename."""
    from deploy.ops import backups

    backups.verify(site, name)
    local_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    remote = f"{site.target.backup_dir}/{name}"
    final = local_dir / name
    _note(site, f"sftp get {remote} and {remote}.meta -> {local_dir}", out)
    parts = []
    try:
        for suffix in ("", ".meta"):
            part = local_dir / f".{name}{suffix}.partial"
            parts.append(part)
            site.run.ctx.get(remote + suffix, local=str(part))
            os.chmod(part, 0o600)
        size, digest = file_digest(parts[0])
        meta = backup.meta_from(backup.parse_fields(parts[1].read_text(encoding="utf-8")))
        if (size, digest) != (meta.size, meta.sha256):
            raise ToolkitError(f"download of {name} is corrupt (sha256 differs from its sidecar); try again")
        os.replace(parts[0], final)
        os.replace(parts[1], local_dir / f"{name}.meta")
    finally:
        for part in parts:
            part.unlink(missing_ok=True)
    out.write(f"downloaded {name} ({backup.human_size(size)}) to {final}\n")
    return final


def upload(site, path: Path, out=sys.stdout) -> str:
    """Verify here, copy to the manager's backups dir under temporary names, rename, verify there."""
    from deploy.ops import backups

    verify_local(path)
    t, run = site.target, site.run
    run.run(backup.mkdir_cmd(t), hide=True, timeout=30)
    name = path.name
    _note(site, f"sftp put {path} and {path}.meta -> {t.backup_dir}", out)
    tmp = [f"{t.backup_dir}/.{name}{suffix}.partial" for suffix in ("", ".meta")]
    try:
        run.ctx.put(str(path), remote=tmp[0])
        run.ctx.put(str(path) + ".meta", remote=tmp[1])
        run.run(["sh", "-c", 'chmod 0600 "$1" "$2" && mv "$1" "$3" && mv "$2" "$3.meta"', "upload",
                 tmp[0], tmp[1], f"{t.backup_dir}/{name}"], hide=True, timeout=60)
    finally:
        run.run(["rm", "-f", *tmp], hide=True, check=False, timeout=30)
    backups.verify(site, name)
    out.write(f"uploaded {name} to {t.backup_dir} on {site.host}\n")
    return name
