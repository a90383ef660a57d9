"""`inv prune`, the registry part: delete the manifests of this environment's releases beyond the kept ones.

Registry HTTP API v2 with the deploy's credentials (deploy.ship.registry): the repository's tags
(``GET /v2/<name>/tags/list``, paginated), each tag's digest (``HEAD /v2/<name>/manifests/<tag>`` accepting
the Docker v2 and OCI manifest and index types), then ``DELETE /v2/<name>/manifests/<digest>`` for each
digest whose every tag is a release this environment deployed and no longer keeps. A digest that any other tag
points to (a kept release, another environment's tag of the same image) or that a service uses is never
deleted: deleting a manifest removes every tag of it. Deleting frees no disk by itself; the blobs go at the
registry's garbage collection: ``inv prune`` runs it for this repository's lab registry (deploy.lab.registry_gc),
and for any other registry it says that GC is the registry operator's job.
"""

from __future__ import annotations

import json
import urllib.error
from concurrent.futures import ThreadPoolExecutor

from deploy.core.errors import ToolkitError


def _fail(cfg, what: str, exc) -> ToolkitError:
    if isinstance(exc, urllib.error.HTTPError):
        return ToolkitError(f"registry {cfg.registry} answered HTTP {exc.code} on {what}; nothing more was deleted "
                            f"there (the nodes were pruned); check REGISTRY / REGISTRY_USER in {cfg.source}")
    return ToolkitError(f"registry {cfg.registry} is not reachable ({getattr(exc, 'reason', exc)}) on {what}; "
                        f"nothing more was deleted there (the nodes were pruned); start it or fix REGISTRY in {cfg.source}")


def tags(cfg) -> list:
    """Every tag of the app's repository (an unknown repository has none)."""
    from deploy.ship import registry

    found, path = [], f"/v2/{cfg.app_image}/tags/list?n=1000"
    while path:
        try:
            with registry.request(cfg, path, timeout=30) as resp:
                found += json.loads(resp.read() or b"{}").get("tags") or []
                link = resp.headers.get("Link") or ""
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return found
            raise _fail(cfg, "the tag list", exc) from None
        except (urllib.error.URLError, OSError) as exc:
            raise _fail(cfg, "the tag list", exc) from None
        path = link.partition("<")[2].partition(">")[0]  # RFC 5988: </v2/name/tags/list?n=1000&last=x>; rel="next"
    return found


def digests(cfg, names: list, workers: int = 4) -> dict:
    """{tag: digest} (HEAD each tag; a few at a time: a bcrypt-checked request costs the registry ~50 ms)."""
    from deploy.ship import registry

    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = dict(zip(names, pool.map(lambda tag: registry.manifest_digest(cfg, tag), names)))
    return {tag: digest for tag, digest in found.items() if digest}


BRIDGED = "-static"   # <tag>-static: a rollback's image with the bridged static files (deploy.ship.actions)


def release_of(tag: str) -> str:
    """The release a registry tag belongs to: ``v1-static`` (what a rollback to v1 pushed) is v1's."""
    return tag[:-len(BRIDGED)] if tag.endswith(BRIDGED) else tag


def plan(tag_digests: dict, remove: set, used_digests: set) -> dict:
    """{digest: [tags]} to delete: digests all of whose tags are (or bridge) releases in ``remove`` and that no
    service uses."""
    by_digest: dict = {}
    for tag, digest in tag_digests.items():
        by_digest.setdefault(digest, []).append(tag)
    return {d: sorted(ts) for d, ts in sorted(by_digest.items())
            if {release_of(t) for t in ts} <= remove and d not in used_digests}


def blobs(cfg, digest: str) -> set:
    """The blobs a manifest names (itself, its config, its layers; an index: its manifests)."""
    from deploy.ship import registry

    try:
        with registry.request(cfg, f"/v2/{cfg.app_image}/manifests/{digest}", timeout=30) as resp:
            doc = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return {digest}
    parts = [doc.get("config") or {}] + (doc.get("layers") or []) + (doc.get("manifests") or [])
    return {digest} | {p["digest"] for p in parts if p.get("digest")}


def delete(cfg, digest: str) -> None:
    from deploy.ship import registry

    try:
        with registry.request(cfg, f"/v2/{cfg.app_image}/manifests/{digest}", method="DELETE", timeout=30):
            return
    except urllib.error.HTTPError as exc:
        if exc.code == 404:  # already gone
            return
        if exc.code == 405:
            raise ToolkitError(f"registry {cfg.registry} does not allow deleting manifests (HTTP 405); enable it "
                               "there (distribution: storage.delete.enabled: true) or delete the old tags yourself; "
                               "the nodes were pruned") from None
        raise _fail(cfg, f"DELETE of {cfg.app_image}@{digest}", exc) from None
    except (urllib.error.URLError, OSError) as exc:
        raise _fail(cfg, f"DELETE of {cfg.app_image}@{digest}", exc) from None


def prune(cfg, remove: set, used_digests: set, dry_run: bool, out) -> set:
    """Delete (or, dry run, list) the manifests of ``remove``'s tags; returns the blobs they named."""
    if not remove:
        out.write(f"registry {cfg.registry}: no old release of this environment to delete\n")
        return set()
    every = tags(cfg)
    todo = plan(digests(cfg, every), set(remove), used_digests)
    verb = "would delete" if dry_run else "deleting"
    named = set()
    for digest, names in todo.items():
        out.write(f"registry {cfg.registry}: {verb} {cfg.app_image}:{', '.join(names)} ({digest[:19]})\n")
        named |= blobs(cfg, digest)
        if not dry_run:
            delete(cfg, digest)
    gone = sum(len(n) for n in todo.values())
    out.write(f"registry {cfg.registry}: {verb if dry_run else 'deleted'} {len(todo)} manifest(s) ({gone} tag(s)); "
              f"{len(every) - gone} tag(s) of {cfg.app_image} stay\n")
    return named


def operator_note(cfg) -> str:
    return (f"registry {cfg.registry}: the deleted manifests' blobs stay on its disk until its garbage collection "
            "runs; that is the registry operator's job (distribution: `registry garbage-collect <config>` "
            "with pushes paused)\n")
