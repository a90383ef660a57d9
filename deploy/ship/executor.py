"""Deploy and roll back: validate, read the environment's state, make the plan (deploy.ship.plan), print it,
and run exactly its steps, timing each. Unlock and the read-only helpers live here too.

Order: validate (config, a dirty tree, the registry answers, an --image/--to tag exists) -> connect -> read
the state (read-only) -> plan -> [dry run: print the plan, stop] -> take the lock -> confirm the state ->
build and push -> the manager steps -> audit and unlock (always). Every step runs through the one Runner
(deploy.core.runner: local, or the Fabric connection from deploy.ship.ssh), and a per-step timing table is
printed at the end of every deploy and rollback, also on failure (up to the failing step).
"""

from __future__ import annotations

import getpass
import os
import socket
import sys
import time
from dataclasses import dataclass, field

from deploy.core.errors import CommandFailed, ToolkitError
from deploy.core.runner import Runner
from deploy.ship import actions, edge_cfg, plan, registry, report, ssh, stackfile, state, swarm


@dataclass
class Record:
    number: int
    step: object
    seconds: float
    result: str
    note: str = ""

    def as_dict(self) -> dict:
        s = self.step
        return {"n": self.number, "kind": s.kind, "where": s.where, "what": s.what, "seconds": round(self.seconds, 3),
                "result": self.result, "note": self.note}


@dataclass
class Outcome:
    image: str
    digest: str
    result: str = "planned"
    seconds: float = 0.0
    plan: object = None
    records: list = field(default_factory=list)

    @property
    def steps(self) -> list:
        """The steps that ran, in order (for a successful deploy: exactly ``plan.steps``)."""
        return [r.step for r in self.records]


def who() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def git_tag() -> str:
    from deploy.core.gitinfo import current_tag

    return current_tag()


def git_info() -> str:
    try:
        return git_tag()
    except ToolkitError:
        return "-"


def release_for(cfg, tag: str | None, *, build: bool, migrate: bool, action: str,
                allow_unsafe: bool = False) -> plan.Release:
    """What is shipped; a -dirty tree or tag is refused unless the environment or --allow-dirty allows it."""
    tree = git_tag() if build else ""
    tag = tag or tree
    dirty = tree.endswith("-dirty") or tag.endswith("-dirty")
    if dirty and not cfg.allow_dirty:
        raise ToolkitError(f"the image {cfg.image_ref(tag)} is built from uncommitted changes (a -dirty tree); {cfg.env} "
                           f"takes committed code only: commit first, or pass --allow-dirty (or set ALLOW_DIRTY=on "
                           f"in {cfg.source}, as the lab does)")
    image = cfg.image_ref(tag)
    owner = f"{who()} pid={os.getpid()} since={actions.now()} action={action} image={image}\n"
    return plan.Release(action=action, tag=tag, build=build, migrate=migrate, dirty=dirty, owner=owner,
                        stamp=f"{tag}@{actions.now()}", allow_unsafe=allow_unsafe)


def deploy(cfg, *, tag: str | None = None, build: bool = True, migrate: bool = True, action: str = "deploy",
           dry_run: bool = False, out=sys.stdout, remote=None, builder=None,
           allow_unsafe_migrations: bool = False) -> Outcome:
    """Deploy ``tag`` (default: build the working tree's git tag); ``build`` False deploys a tag in the registry."""
    rel = release_for(cfg, tag, build=build, migrate=migrate, action=action, allow_unsafe=allow_unsafe_migrations)
    if build:   # the image's IMAGE_* settings (.env) fail here, before the registry or the manager is contacted
        from deploy.image import buildargs
        from deploy.local import localenv

        buildargs.from_settings(localenv.load())
    registry.check(cfg)
    if not build:
        registry.require_tag(cfg, rel.tag)
    return _connected(cfg, remote, out, lambda run: ship(cfg, rel, run, dry_run=dry_run, out=out, builder=builder))


def rollback(cfg, *, to: str | None = None, dry_run: bool = False, out=sys.stdout, remote=None,
             yes: bool = False) -> Outcome:
    """Roll back to ``to`` (a tag in the registry) or to the previous successful deploy in the audit log.

    No build, no push, no migration (a newer schema stays: migrations must be backward compatible)."""
    registry.check(cfg)
    if to is not None:
        registry.require_tag(cfg, to)

    def body(run):
        target = to or previous_tag(cfg, run)
        rel = release_for(cfg, target, build=False, migrate=False, action="rollback")
        if to is None:
            registry.require_tag(cfg, target)
        from deploy.ops import rollback_check

        if not dry_run:  # names applied migrations the target does not know; asks unless --yes
            rollback_check.confirm(cfg, run, target, yes)
        return ship(cfg, rel, run, dry_run=dry_run, out=out)

    return _connected(cfg, remote, out, body)


def _connected(cfg, remote, out, body):
    run = remote or ssh.remote_runner(cfg, out=out)
    run.echo = False  # the executor prints each step once; state reads are summed up in the plan's header
    run.add_secrets(stackfile.database_url(cfg))
    try:
        return body(run)
    except Exception as exc:  # noqa: BLE001 - an SSH error while reading the state: one line, or re-raised
        if isinstance(exc, ToolkitError) or not report.is_ssh_error(exc):
            raise
        raise ToolkitError(f"reading the state of {cfg.env} on {ssh.target(cfg)} failed ({report.short(exc)}); "
                           f"nothing was changed: check the manager (`inv status --env {cfg.env}`) and rerun") from None
    finally:
        if run.ctx is not None and hasattr(run.ctx, "close"):
            run.ctx.close()


def ship(cfg, rel: plan.Release, run: Runner, *, dry_run: bool, out=sys.stdout, builder=None) -> Outcome:
    """Plan from the current state, print the plan; unless ``dry_run``, run it and print the timing table."""
    snapshot = state.read(cfg, run, rel.tag)
    the_plan = plan.build_deploy_plan(cfg, rel, snapshot, edge_cfg.render(cfg))
    out.write(report.plan_text(the_plan, run.secrets))
    outcome = Outcome(image=cfg.image_ref(rel.tag), digest=snapshot.digest or "", plan=the_plan)
    if dry_run:
        out.write(f"dry run: {len(the_plan.steps)} steps planned; nothing was run, no lock was taken\n")
        return outcome
    local = Runner(where="local", secrets=run.secrets, echo=False, out=out)
    job = actions.Job(cfg=cfg, release=rel, state=snapshot, manager=run, local=local, out=out, builder=builder,
                      digest=snapshot.digest or "", when=actions.now())
    started = time.monotonic()
    failure = execute(job, the_plan)
    outcome.seconds = time.monotonic() - started
    outcome.result, outcome.digest, outcome.records = job.result, job.digest, job.records
    out.write(report.table_text(job.records, f"{rel.action} of {job.pinned} to {cfg.env}: {job.result}",
                                outcome.seconds, len(the_plan.steps)))
    if failure is not None:
        raise failure
    out.write(f"{rel.action}: {job.pinned} is serving on {cfg.env} ({outcome.seconds:.1f}s)\n")
    return outcome


def execute(job, the_plan) -> BaseException | None:
    """Run the steps in order; after a failure only the ``always`` steps (cleanup, audit, unlock) run.
    Returns the first failure (a one-line ToolkitError, or the KeyboardInterrupt) for the caller to raise."""
    failure, total = None, len(the_plan.steps)
    for number, step in enumerate(the_plan.steps, 1):
        if failure is not None and not (step.always and job.locked):
            continue  # after a failure: only cleanup, audit and unlock, and only with our own lock
        if failure is None and number == total:
            job.result = "ok"
        job.out.write(report.step_line(number, total, step, job.manager.secrets) + "\n")
        job.out.flush()
        started = time.monotonic()
        try:
            note = _attempt(job, number, total, step)
        except (ToolkitError, KeyboardInterrupt) as exc:
            first = (str(exc) or type(exc).__name__).splitlines()[0]
            job.records.append(Record(number, step, time.monotonic() - started, "failed", first))
            if failure is None:
                failure, job.result = exc, "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            else:
                job.out.write(f"warning: {first}\nwarning: the deploy lock may still be held: "
                              f"`inv unlock --env {job.cfg.env}` once you checked\n")
            continue
        job.records.append(Record(number, step, time.monotonic() - started, "ok", note or ""))
    return failure


def _attempt(job, number: int, total: int, step) -> str:
    """One step; Docker SDK, SSH and network errors become one line naming the step and what to do."""
    try:
        if step.action is not None:
            return step.action(job, step)
        return actions.put_step(job, step) if step.kind == plan.PUT else actions.run_step(job, step)
    except CommandFailed as exc:
        env = job.cfg.env
        why = f"timed out after {job.cfg.command_timeout:g}s" if exc.timed_out else f"exit {exc.exit_code}"
        raise ToolkitError(f"step {number}/{total} ({step.what}) failed ({why}); check `inv status --env {env}` and "
                           f"`inv logs --env {env}`" + (f"; output:\n{exc.output_tail}" if exc.output_tail else "")) from None
    except ToolkitError:
        raise
    except Exception as exc:  # noqa: BLE001 - translated into one line below, or re-raised
        message = report.failure_line(job, number, total, step, exc)
        if message is None:
            raise
        raise ToolkitError(message) from None


def previous_tag(cfg, run) -> str:
    text = run.run(swarm.audit_show_cmd(cfg, 1000), hide=True, check=False, timeout=cfg.command_timeout).stdout
    previous = swarm.previous_image(swarm.parse_audit(text))
    if previous is None:
        raise ToolkitError(f"no earlier successful deploy in the audit log of {cfg.env}; use --to TAG")
    return previous.rpartition(":")[2]


def unlock(cfg, out=sys.stdout) -> None:
    run = ssh.remote_runner(cfg, out=out)
    try:
        holder = run.run(swarm.lock_owner_cmd(cfg), hide=True, check=False, timeout=cfg.command_timeout)
        run.run(swarm.unlock_cmd(cfg), hide=True, timeout=cfg.command_timeout)
        out.write(f"released the deploy lock (held by: {holder.stdout.strip() or 'nobody'})\n")
    finally:
        run.ctx.close()
