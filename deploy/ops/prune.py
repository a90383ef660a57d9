"""`inv prune --env ENV [--keep N] [--dry-run]`: remove what no service uses and no rollback needs.

Under the deploy lock (a deploy holding it -> refused, naming the holder). The rollback targets are the last N
distinct successful releases of the audit log; the candidates are the other releases this environment
deployed (its audit log: another environment's or stack's images are never candidates).
  - on EVERY node of the swarm (deploy.ops.prune_nodes: one global job): the candidates' images that no
    container uses, and the stack's stopped task containers; per node what was removed and freed;
  - on the manager: the stack's versioned secrets and configs (label com.docker.stack.namespace) that no
    service references;
  - in the registry (deploy.ops.prune_registry): the candidates' manifests, unless another tag or a service
    still points at the same digest; then the lab registry's garbage collection (``gc``, given by the task
    for this repository's lab), or a note that GC is the registry operator's job.
Anything a service of the swarm uses (its image digest, secret, config) stays. --dry-run lists what would go
and removes nothing (the listing itself runs as the same short-lived job on every node).
"""

from __future__ import annotations

import json
import sys

from deploy.core.errors import CommandFailed, ToolkitError
from deploy.ops import prune_nodes, prune_registry


def tag_of(image: str) -> str:
    return image.partition("@")[0].rpartition(":")[2]


def keep_tags(rows: list, keep: int) -> list:
    """The last ``keep`` distinct successful releases (image tags) in the audit log, newest first."""
    tags = []
    for row in reversed(rows):
        tag = tag_of(row.get("image", ""))
        if row.get("result") == "ok" and tag and tag not in tags:
            tags.append(tag)
    return tags[:keep]


def deployed_tags(rows: list) -> set:
    return {tag_of(r.get("image", "")) for r in rows if r.get("image")} - {""}


def digests_of(rows: list, tags: set) -> set:
    """The manifest digests the audit log recorded for ``tags``."""
    return {r["digest"] for r in rows if tag_of(r.get("image", "")) in tags and r.get("digest", "-").startswith("sha256:")}


def services_cmd() -> list:
    """Every service of the swarm (not only this stack's: another stack may run the same image)."""
    return ["docker", "service", "ls", "--quiet"]


def specs_cmd(ids: list) -> list:
    return ["docker", "service", "inspect", "--format", "{{.Spec.Name}}\t{{json .Spec.TaskTemplate.ContainerSpec}}", *ids]


def objects_cmd(cfg, kind: str) -> list:
    return ["docker", kind, "ls", "--format", "{{.Name}}", "--filter", f"label=com.docker.stack.namespace={cfg.stack_name}"]


def in_use(spec_lines: str) -> dict:
    """What the swarm's services use: image digests, secret and config names; each service's image."""
    used = {"digests": set(), "secrets": set(), "configs": set(), "by_service": {}}
    for line in spec_lines.splitlines():
        name, _, doc = line.partition("\t")
        if doc.strip():
            spec = json.loads(doc)
            image = spec.get("Image", "")
            used["by_service"][name] = image
            used["digests"].add(image.partition("@")[2])
            used["secrets"].update(s.get("SecretName", "") for s in spec.get("Secrets") or [])
            used["configs"].update(c.get("ConfigName", "") for c in spec.get("Configs") or [])
    used["digests"].discard("")
    return used


def plan(cfg, rows: list, keep: int, used: dict, secrets: str, configs: str) -> dict:
    """What to remove (pure: from the audit log and the listing commands' outputs)."""
    kept = keep_tags(rows, keep)
    remove = deployed_tags(rows) - set(kept)
    return {"kept": kept, "remove": remove, "remove_digests": digests_of(rows, remove) - used["digests"],
            "keep_digests": digests_of(rows, set(kept)) | used["digests"],
            "secrets": [n for n in secrets.split() if n not in used["secrets"]],
            "configs": [n for n in configs.split() if n not in used["configs"]]}


def _lock(cfg, run, owner: str) -> None:
    from deploy.ship import swarm

    t = cfg.command_timeout
    try:
        run.run(swarm.lock_cmd(cfg), stdin=owner, hide=True, timeout=t)
    except CommandFailed:
        holder = run.run(swarm.lock_owner_cmd(cfg), hide=True, check=False, timeout=t).stdout.strip()
        raise ToolkitError(f"prune refused: the deploy lock {swarm.paths(cfg).lock} is held by: {holder or 'unknown'}; "
                           f"wait for that deploy to finish (or `inv unlock --env {cfg.env}` if it is stale)") from None


def _survey(cfg, run, keep: int) -> tuple[dict, dict]:
    from deploy.ship import swarm

    t = cfg.command_timeout
    rows = swarm.parse_audit(run.run(swarm.audit_show_cmd(cfg, 100000), hide=True, check=False, timeout=t).stdout)
    ids = run.run(services_cmd(), hide=True, timeout=t).stdout.split()
    used = in_use(run.run(specs_cmd(ids), hide=True, timeout=t).stdout if ids else "")
    secrets, configs = (run.run(objects_cmd(cfg, k), hide=True, timeout=t).stdout for k in ("secret", "config"))
    return plan(cfg, rows, keep, used, secrets, configs), used


def prune(cfg, run, keep: int, dry_run: bool, owner: str, out=sys.stdout, gc=None) -> dict:
    """``gc(expected_blobs, out)``: the registry's garbage collection when this machine can run it (the lab)."""
    from deploy.ship import stackfile, swarm

    if keep < 1:
        raise ToolkitError(f"--keep {keep}: keep at least 1 release (the one serving), e.g. --keep 3")
    _lock(cfg, run, owner)
    try:
        todo, used = _survey(cfg, run, keep)
        image = used["by_service"].get(stackfile.service(cfg, "app"))
        if not image:
            raise ToolkitError(f"prune needs the app service {stackfile.service(cfg, 'app')} (its image runs the "
                               f"prune job on every node); deploy first (`inv deploy --env {cfg.env}`); nothing was removed")
        out.write(f"keeping releases: {', '.join(todo['kept']) or 'none'} (and whatever a service uses)\n")
        data = prune_nodes.payload(cfg, todo["remove"], todo["remove_digests"], todo["keep_digests"], dry_run)
        todo["nodes"] = prune_nodes.report(*prune_nodes.run_job(cfg, run, image, data, cfg.converge_timeout),
                                           dry_run, out)
        _objects(run, todo, dry_run, out, cfg.command_timeout)
        named = prune_registry.prune(cfg, todo["remove"], used["digests"], dry_run, out)
        if named and not dry_run and gc:
            gc(named, out)
        elif named and not dry_run:
            out.write(prune_registry.operator_note(cfg))
        todo["blobs"] = named
    finally:
        run.run(swarm.unlock_cmd(cfg), hide=True, check=False, timeout=cfg.command_timeout)
    return todo


def _objects(run, todo: dict, dry_run: bool, out, t: float) -> None:
    """The stack's unused secrets and configs (on the manager: they are swarm objects)."""
    verb = "would remove" if dry_run else "removing"
    for kind in ("secret", "config"):
        names = todo[kind + "s"]
        if names:
            out.write(f"{verb} {len(names)} unused {kind}(s): {' '.join(names[:8])}{' ...' if len(names) > 8 else ''}\n")
            if not dry_run:
                run.run(["docker", kind, "rm", *names], hide=True, check=False, timeout=t)
