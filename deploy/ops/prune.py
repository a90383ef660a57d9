"""`inv prune --env ENV [--keep N] [--dry-run]`: remove what no service uses and no rollback needs.

Under the deploy lock (a deploy holding it -> refused, naming the holder), on the manager:
  - app images of releases this environment deployed (its audit log) that are not among the last N
    successful releases and not used by a service: a rollback target always stays;
  - the stack's stopped task containers;
  - the stack's versioned secrets and configs (label com.docker.stack.namespace) no service references.
It prints what it removed (or, with --dry-run, would remove) and the image sizes freed.
Not done: other nodes of a cluster (only the manager's engine is reached) and registry tags / garbage
collection (see README "Operating production").
"""

from __future__ import annotations

import json
import sys

from deploy.core.errors import CommandFailed, ToolkitError


def keep_tags(rows: list, keep: int) -> list:
    """The last ``keep`` distinct successful releases (image tags) in the audit log, newest first."""
    tags = []
    for row in reversed(rows):
        tag = row.get("image", "").partition("@")[0].rpartition(":")[2]
        if row.get("result") == "ok" and tag and tag not in tags:
            tags.append(tag)
    return tags[:keep]


def deployed_tags(rows: list) -> set:
    return {r.get("image", "").partition("@")[0].rpartition(":")[2] for r in rows if r.get("image")} - {""}


def images_cmd(cfg) -> list:
    return ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}\t{{.Size}}", cfg.repository]


def services_cmd(cfg) -> list:
    return ["docker", "service", "ls", "--quiet", "--filter", f"label=com.docker.stack.namespace={cfg.stack_name}"]


def specs_cmd(ids: list) -> list:
    return ["docker", "service", "inspect", "--format", "{{json .Spec.TaskTemplate.ContainerSpec}}", *ids]


def stopped_cmd(cfg) -> list:
    return ["docker", "container", "ls", "--all", "--quiet", "--filter", "status=exited",
            "--filter", f"label=com.docker.stack.namespace={cfg.stack_name}"]


def objects_cmd(cfg, kind: str) -> list:
    return ["docker", kind, "ls", "--format", "{{.Name}}", "--filter", f"label=com.docker.stack.namespace={cfg.stack_name}"]


def in_use(spec_lines: str) -> tuple[set, set, set]:
    """(images, secret names, config names) that the stack's services use."""
    images, secrets, configs = set(), set(), set()
    for line in spec_lines.splitlines():
        if line.strip():
            spec = json.loads(line)
            images.add(spec.get("Image", "").partition("@")[0])
            secrets.update(s.get("SecretName", "") for s in spec.get("Secrets") or [])
            configs.update(c.get("ConfigName", "") for c in spec.get("Configs") or [])
    return images, secrets, configs


def plan(cfg, rows: list, keep: int, images: str, specs: str, stopped: str, secrets: str, configs: str) -> dict:
    """What to remove, by kind (pure: from the outputs of the listing commands)."""
    used_images, used_secrets, used_configs = in_use(specs)
    kept, ours = set(keep_tags(rows, keep)), deployed_tags(rows)
    gone = []
    for line in images.splitlines():
        ref, _, size = line.partition("\t")
        tag = ref.rpartition(":")[2]
        if tag in ours and tag not in kept and ref not in used_images:
            gone.append((ref, size))
    return {"images": gone, "containers": stopped.split(),
            "secrets": [n for n in secrets.split() if n not in used_secrets],
            "configs": [n for n in configs.split() if n not in used_configs], "kept": sorted(kept)}


def prune(cfg, run, keep: int, dry_run: bool, owner: str, out=sys.stdout) -> dict:
    from deploy.ship import swarm

    if keep < 1:
        raise ToolkitError(f"--keep {keep}: keep at least 1 release (the one serving), e.g. --keep 3")
    t = cfg.command_timeout
    try:
        run.run(swarm.lock_cmd(cfg), stdin=owner, hide=True, timeout=t)
    except CommandFailed:
        holder = run.run(swarm.lock_owner_cmd(cfg), hide=True, check=False, timeout=t).stdout.strip()
        raise ToolkitError(f"prune refused: the deploy lock {swarm.paths(cfg).lock} is held by: {holder or 'unknown'}; "
                           f"wait for that deploy to finish (or `inv unlock --env {cfg.env}` if it is stale)") from None
    try:
        rows = swarm.parse_audit(run.run(swarm.audit_show_cmd(cfg, 100000), hide=True, check=False, timeout=t).stdout)
        ids = run.run(services_cmd(cfg), hide=True, timeout=t).stdout.split()
        specs = run.run(specs_cmd(ids), hide=True, timeout=t).stdout if ids else ""
        listed = [run.run(cmd, hide=True, timeout=t).stdout for cmd in
                  (images_cmd(cfg), stopped_cmd(cfg), objects_cmd(cfg, "secret"), objects_cmd(cfg, "config"))]
        todo = plan(cfg, rows, keep, listed[0], specs, listed[1], listed[2], listed[3])
        _report(todo, dry_run, out)
        if not dry_run:
            _remove(run, todo, t)
    finally:
        run.run(swarm.unlock_cmd(cfg), hide=True, check=False, timeout=t)
    return todo


def _report(todo: dict, dry_run: bool, out) -> None:
    verb = "would remove" if dry_run else "removing"
    out.write(f"keeping releases: {', '.join(todo['kept']) or 'none'} (and whatever a service uses)\n")
    for ref, size in todo["images"]:
        out.write(f"{verb} image {ref} ({size})\n")
    for kind in ("containers", "secrets", "configs"):
        if todo[kind]:
            out.write(f"{verb} {len(todo[kind])} unused {kind[:-1]}(s): {' '.join(todo[kind][:8])}"
                      f"{' ...' if len(todo[kind]) > 8 else ''}\n")
    if not any(todo[k] for k in ("images", "containers", "secrets", "configs")):
        out.write("nothing to prune\n")


def _remove(run, todo: dict, t: float) -> None:
    for ref, _ in todo["images"]:
        run.run(["docker", "image", "rm", ref], hide=True, check=False, timeout=t)
    if todo["containers"]:
        run.run(["docker", "container", "rm", *todo["containers"]], hide=True, check=False, timeout=t)
    for kind in ("secret", "config"):
        if todo[kind + "s"]:
            run.run(["docker", kind, "rm", *todo[kind + "s"]], hide=True, check=False, timeout=t)
