"""What the executor does for each kind of plan step; the step-specific actions (lock, state check, build,
push, migration, polls, health, audit) as functions ``action(job, step) -> note``.

A note is a short result for the timing table ("12 polls", a digest, "already exists"). Errors are
ToolkitError lines that say what failed and what to do.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from deploy.core.errors import CommandFailed, ToolkitError
from deploy.ship import registry, swarm, wait


@dataclass
class Job:
    """One running plan: the settings, what is shipped, the state it was planned from, the two runners, and
    what the steps found out (the pushed digest, the records)."""

    cfg: object
    release: object
    state: object
    manager: object
    local: object
    out: object
    builder: object = None
    digest: str = ""
    local_ref: str = ""
    result: str = "started"
    locked: bool = False  # after a failure, the always-steps run only if this deploy holds the lock
    when: str = ""
    records: list = field(default_factory=list)
    facts: dict = field(default_factory=dict)  # what steps found out for later ones (deploy.ops: pending, backup)

    @property
    def image(self) -> str:
        return self.cfg.image_ref(self.release.tag)

    @property
    def pinned(self) -> str:
        return f"{self.image}@{self.digest}"

    def runner(self, where: str):
        return self.local if where == "local" else self.manager


def value(item, job):
    return item(job) if callable(item) else item


# Swarm refuses a service update whose spec changed since the client read it (another update of the same service
# in between): transient, and the stack/service commands that meet it are idempotent, so they are run again.
OUT_OF_SEQUENCE = "update out of sequence"
RETRIES = 3


def run_step(job: Job, step, argv=None) -> str:
    """A RUN step: the command, its stdin, its timeout; ``ok_output`` tolerated, ``fail`` as the error."""
    for attempt in range(RETRIES + 1):
        res = job.runner(step.where).run(list(argv or step.argv), stdin=value(step.stdin, job), hide=step.hide,
                                         check=False, timeout=job.cfg.command_timeout)
        output = (res.stderr + "\n" + res.stdout).strip()
        if res.ok or OUT_OF_SEQUENCE not in output or attempt == RETRIES:
            break
        time.sleep(1 + attempt)
    if res.ok:
        return f"ran again {attempt}x ({OUT_OF_SEQUENCE})" if attempt else ""
    if step.ok_output and step.ok_output in output:
        return step.ok_output
    tail = "\n".join((res.stderr or res.stdout).strip().splitlines()[-10:])
    if step.fail:
        raise ToolkitError(step.fail.format(code=res.exited, tail=tail, env=job.cfg.env))
    raise CommandFailed(res.command, exit_code=res.exited, output_tail=tail)


def put_step(job: Job, step) -> str:
    data = value(step.content, job)
    job.runner(step.where).put(data, step.path)
    return f"{len(data.encode() if isinstance(data, str) else data)} bytes"


def take_lock(job: Job, step) -> str:
    cfg = job.cfg
    try:
        run_step(job, step)
    except CommandFailed as exc:
        if exc.timed_out:
            raise
        holder = job.manager.run(swarm.lock_owner_cmd(cfg), hide=True, check=False, timeout=cfg.command_timeout)
        raise ToolkitError(
            f"deploy lock {swarm.paths(cfg).lock} on {cfg.manager_host} is held by: "
            f"{holder.stdout.strip() or 'unknown (no owner file)'}; wait for that deploy to finish, or if it is "
            f"stale release it with `inv unlock --env {cfg.env}`") from None
    job.locked = True
    return "taken"


def confirm_state(job: Job, step) -> str:
    from deploy.ship import state

    now = state.read(job.cfg, job.manager, job.release.tag)
    if now != job.state:
        raise ToolkitError(f"the environment changed between planning and taking the lock (planned: "
                           f"{job.state.describe()}; now: {now.describe()}); another deploy ran meanwhile. Nothing "
                           f"was changed: run the deploy again")
    return "as planned"


def build_image(job: Job, step) -> str:
    builder = job.builder
    if builder is None:
        from deploy.image.builder import build as builder
    job.local_ref = builder(tag=job.release.tag).ref
    from deploy.image import bridge   # the previous releases' hashed static files (issue 13)

    note = bridge.apply(job.cfg, job.manager, job.local_ref, job.release.tag, out=job.out)
    return f"{job.local_ref}; {note}" if note else job.local_ref


def push_image(job: Job, step) -> str:
    job.digest = registry.push(job.cfg, job.local_ref, job.release.tag, out=job.out)
    if not job.digest.startswith("sha256:"):
        raise ToolkitError(f"push of {job.image} reported no digest; the release cannot be pinned; check the "
                           f"registry ({job.cfg.registry}) and push again")
    return job.digest


def bridge_release(job: Job, step) -> str:
    """A rollback: the tag's image (its registry digest) plus the other recent releases' hashed static files."""
    from deploy.image import bridge

    local = f"{job.cfg.app_image}:{job.release.tag}-static"
    note = bridge.apply(job.cfg, job.manager, local, job.release.tag, out=job.out,
                        base=f"{job.cfg.repository}@{job.state.digest}")
    job.local_ref = local if note.startswith("+") else ""
    return note


def push_bridged(job: Job, step) -> str:
    if not job.local_ref:
        return "nothing added: the release's own image serves"
    job.digest = registry.push(job.cfg, job.local_ref, f"{job.release.tag}-static", out=job.out)
    if not job.digest.startswith("sha256:"):
        raise ToolkitError(f"push of {job.image}-static reported no digest; check the registry ({job.cfg.registry}) "
                           f"and roll back again")
    return job.digest


def migrate(job: Job, step) -> str:
    if job.facts.get("pending") == []:  # the migration check just ran the new image's plan against this database
        return "skipped: no pending migrations"
    return run_step(job, step, swarm.migrate_cmd(job.cfg, job.pinned))


def wait_running(job: Job, step) -> str:
    return f"{wait.running(job.cfg, job.manager, *step.args)} polls"


def wait_update(job: Job, step) -> str:
    name, prior = step.args
    return f"{wait.update(job.cfg, job.manager, name, prior, job.pinned)} polls"


def check_health(job: Job, step) -> str:
    return f"{wait.health(job.cfg, job.release.tag)} polls"


def timings(job: Job) -> dict:
    """The deploy's step records as one JSON-able dict (stored on the manager next to the audit log)."""
    rel = job.release
    return {"when": job.when, "action": rel.action, "env": job.cfg.env, "image": job.image,
            "digest": job.digest or "-", "tree": "dirty" if rel.dirty else "clean", "result": job.result,
            "steps": [r.as_dict() for r in job.records]}


def finish_input(job: Job) -> str:
    from deploy.ship.executor import git_info, who

    line = swarm.audit_line(when=job.when, who=who(), action=job.release.action, env=job.cfg.env, git=git_info(),
                            image=job.image, digest=job.digest, result=job.result, dirty=job.release.dirty,
                            backup=job.facts.get("backup", ""))
    return line + json.dumps(timings(job), separators=(",", ":")) + "\n"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
