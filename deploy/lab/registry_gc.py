"""Garbage collection of the lab registry after `inv prune` deleted manifests (the lab runs it; any other
registry's GC is its operator's job).

``docker-registry garbage-collect <config>`` (distribution 2.8) deletes every blob no manifest names. Run
while the registry serves, it races with a push in flight: a layer already uploaded whose manifest is not yet
pushed counts as unreferenced. So it goes on only when no push is in flight: no upload is being written (a
``_uploads/<id>/data`` file changed in the last UPLOADING seconds; an aborted upload's stale one does not
count), and its ``--dry-run`` finds no blob to delete that the deleted manifests did not name and that is
younger than RECENT seconds (a push between its last layer and its manifest). When it finds such blobs it
waits until they are RECENT seconds old and looks again once: still unreferenced, they are leftovers (e.g. of
a manifest someone deleted) and go too. Otherwise it says why it skipped and changes nothing. The lab's config has no blob-descriptor
cache, so the running registry does not keep answering for deleted blobs. Freed bytes are measured on the
storage directory (the blob files' sizes).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from deploy.lab import paths, registry

RECENT = 60.0      # a push's last layer to its manifest: well under a second on loopback
UPLOADING = 600.0  # an upload file untouched this long is an aborted push, not one in flight
ELIGIBLE = re.compile(r"blob eligible for deletion: (sha256:[0-9a-f]{64})")


def applies(registry_address: str) -> bool:
    """True for this machine's lab registry (its config file is here)."""
    return registry_address == paths.REGISTRY and registry.CONFIG.exists()


def gc_argv(dry_run: bool) -> list:
    return [registry.EXE, "garbage-collect", *(["--dry-run"] if dry_run else []), str(registry.CONFIG)]


def blob_file(digest: str, data: Path | None = None) -> Path:
    hexa = digest.partition(":")[2]
    return (data or registry.DATA) / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexa[:2] / hexa / "data"


def eligible(output: str) -> list:
    return sorted(set(ELIGIBLE.findall(output)))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _young(path: Path, now: float, seconds: float = RECENT) -> bool:
    try:
        return now - path.stat().st_mtime < seconds
    except OSError:
        return False


def uploading(now: float, data: Path | None = None) -> int:
    """How many uploads are being written now (any repository)."""
    root = (data or registry.DATA) / "docker" / "registry" / "v2" / "repositories"
    return sum(1 for f in root.glob("**/_uploads/*/data") if _young(f, now, UPLOADING))


def _settled(runner, expected: set, out, now, sleep) -> list | None:
    """The blobs the GC would delete once no push is in flight; None (said why) when one still may be."""
    for attempt in (1, 2):
        moment = now()
        if uploading(moment):
            out.write(f"lab registry garbage collection skipped: {uploading(moment)} upload(s) in progress; "
                      "run `inv prune` again later\n")
            return None
        dry = runner.run(gc_argv(True), hide=True, timeout=120)
        found = eligible(dry.stdout + dry.stderr)
        young = [d for d in found if d not in expected and _young(blob_file(d), moment)]
        if not young:
            return found
        if attempt == 2:
            out.write(f"lab registry garbage collection skipped: {len(young)} unreferenced blob(s) younger than "
                      f"{RECENT:.0f}s that prune did not free (a push may be in progress); run `inv prune` again later\n")
            return None
        # A push references its blobs within moments; still unreferenced after RECENT, they are leftovers.
        wait = max(RECENT - (moment - _mtime(blob_file(d))) for d in young) + 1
        out.write(f"lab registry garbage collection: {len(young)} recent unreferenced blob(s) prune did not free; "
                  f"waiting {wait:.0f}s for a push that may be in flight\n")
        sleep(wait)
    return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def collect(runner, expected: set, out, now=time.time, sleep=time.sleep) -> tuple[int, int]:
    """Run the GC once no push is in flight; returns (blobs removed, bytes freed)."""
    from deploy.ops.prune_nodes import human

    found = _settled(runner, expected, out, now, sleep)
    if found is None:
        return 0, 0
    sizes = {d: _size(blob_file(d)) for d in found}
    if found:
        runner.run(gc_argv(False), hide=True, timeout=300)
    removed = [d for d in found if not blob_file(d).exists()]
    freed = sum(sizes[d] for d in removed)
    out.write(f"lab registry garbage collection: removed {len(removed)} blob(s), freed {human(freed)}\n")
    return len(removed), freed
