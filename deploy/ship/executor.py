"""Deploy, roll back, unlock: the steps in order, run through the Runner (local and on the manager).

A dry run goes through exactly the same code with dry-run Runners, so what it prints is what a real
run executes (``Runner.history``); the only difference is that waits and checks are printed once
instead of being polled. Every wait has a deadline and says what timed out.
"""

from __future__ import annotations

import getpass
import os
import socket
import sys
import time
from dataclasses import dataclass, field

from deploy.ship import edge_cfg, edge_steps, registry, ssh, swarm
from deploy.core.errors import CommandFailed, ToolkitError
from deploy.ship.wait import health, note, wait_running, wait_update


@dataclass
class Outcome:
    image: str
    digest: str
    result: str = "started"
    seconds: float = 0.0
    history: list = field(default_factory=list)


def who() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def git_tag() -> str:
    from deploy.core.gitinfo import current_tag

    return current_tag()


def build_and_push(cfg, tag: str, local, out, builder=None) -> str:
    """Build the app image with deploy.image.builder (or ``builder(tag)``) and push it; return the digest (dry run: '')."""
    note(local, f"build app image with tag {tag} (deploy.image.builder.build)")
    if not local.dry_run:
        if builder is None:
            from deploy.image.builder import build as builder
        local_ref = builder(tag=tag).ref
    note(local, f"push {cfg.image_ref(tag)} (Docker SDK, credentials in the auth header)")
    if local.dry_run:
        return ""
    return registry.push(cfg, local_ref, tag, out=out)


def deploy(cfg, *, tag: str | None = None, build: bool = True, migrate: bool = True, action: str = "deploy",
           dry_run: bool = False, out=sys.stdout, remote=None, builder=None) -> Outcome:
    """Validate-then-act: registry, build+push (or an existing tag), then the manager steps."""
    started = time.monotonic()
    history: list = []
    from deploy.core.runner import Runner

    local = Runner(where="local", secrets=tuple(cfg.secrets), dry_run=dry_run, out=out)
    local.history = history
    tag = tag or git_tag()
    image = cfg.image_ref(tag)
    note(local, f"check registry {registry.base_url(cfg.registry)}/v2/ (user {cfg.registry_user})")
    if not dry_run:
        registry.check(cfg)
    if build:
        digest = build_and_push(cfg, tag, local, out, builder)
    else:
        note(local, f"check that {image} is in the registry")
        digest = "" if dry_run else registry.require_tag(cfg, tag)
    edge_ref = edge_steps.prepare_image(cfg, local, out) if cfg.proxy and cfg.tls else ""
    run = remote or ssh.remote_runner(cfg, dry_run=dry_run, out=out)
    run.history = history
    run.add_secrets(swarm.database_url(cfg))
    outcome = Outcome(image=image, digest=digest, history=history)
    try:
        acquire_lock(cfg, run, f"{who()} pid={os.getpid()} since={now()} action={action} image={image}\n")
        try:
            roll_out(cfg, run, tag, image, migrate=migrate, base=migrate, edge_ref=edge_ref)
            outcome.result = "ok"
        except ToolkitError:
            outcome.result = "failed"
            raise
        except BaseException:
            outcome.result = "interrupted"
            raise
        finally:
            finish(cfg, run, outcome, action)
    except OSError as exc:  # the SSH connection broke mid-deploy (paramiko raises socket errors)
        raise ToolkitError(f"SSH connection to {ssh.target(cfg)} failed during the {action} ({exc}); "
                           f"check `inv status --env {cfg.env}`; if a deploy lock remains, `inv unlock --env {cfg.env}`") from None
    finally:
        if run.ctx is not None and hasattr(run.ctx, "close"):
            run.ctx.close()
    outcome.seconds = time.monotonic() - started
    out.write(f"{action}: {image} {digest or ''} is serving on {cfg.env} ({outcome.seconds:.1f}s)\n".replace("  ", " "))
    return outcome


def acquire_lock(cfg, run, owner_line: str) -> None:
    try:
        run.run(swarm.lock_cmd(cfg), stdin=owner_line, hide=True, timeout=cfg.command_timeout)
    except CommandFailed as exc:
        if exc.timed_out:
            raise
        holder = run.run(swarm.lock_owner_cmd(cfg), hide=True, check=False, timeout=cfg.command_timeout)
        raise ToolkitError(
            f"deploy lock {swarm.paths(cfg).lock} on {cfg.manager_host} is held by: "
            f"{holder.stdout.strip() or 'unknown (no owner file)'}; wait for that deploy to finish, or if it is "
            f"stale release it with `inv unlock --env {cfg.env}`") from None


def roll_out(cfg, run, tag: str, image: str, *, migrate: bool, base: bool, edge_ref: str = "") -> None:
    p = swarm.paths(cfg)
    t = cfg.command_timeout
    proxy_text = edge_cfg.render(cfg)
    cfg_name = swarm.proxy_config_name(cfg, proxy_text)
    release = f"{tag}@{now()}"
    parallelism = 1 if migrate else 0  # a rollback (no migration) replaces every task at once, start-first
    run.put(swarm.render(swarm.stack_spec(cfg, image, tag, release, cfg_name, parallelism=parallelism,
                                          edge_ref=edge_ref)), p.stack)
    if cfg.proxy:
        run.put(proxy_text, p.proxy_cfg)
    run.run(swarm.login_cmd(cfg), stdin=cfg.registry_password + "\n", hide=True, timeout=t)
    for key, name in swarm.secret_names(cfg).items():
        res = run.run(swarm.secret_create_cmd(cfg, key, name), stdin=swarm.secret_values(cfg)[key], hide=True,
                      check=False, timeout=t)
        if not res.ok and "already exists" not in (res.stderr + res.stdout):
            raise CommandFailed(res.command, exit_code=res.exited, output_tail=res.stderr.strip())
    prior = run.run(swarm.update_status_cmd(cfg, "app"), hide=True, check=False, timeout=t)
    existed = prior.ok
    if base:
        only = ("db", "proxy", "certs") if cfg.proxy else ("db",)
        run.put(swarm.render(swarm.stack_spec(cfg, image, tag, release, cfg_name, only=only, edge_ref=edge_ref)),
                p.base)
        run.run(swarm.stack_deploy_cmd(cfg, p.base), timeout=t)
        wait_running(cfg, run, "db", 1)
        if cfg.proxy and cfg.tls:
            edge_steps.wait_certs(cfg, run)
    edge_steps.trusted_proxy(cfg, run)
    if migrate:
        run.put(swarm.migrate_env(cfg), p.migrate_env)
        try:
            run.run(swarm.migrate_cmd(cfg, image), timeout=t)
        except CommandFailed as exc:
            raise ToolkitError(f"migration failed (exit {exc.exit_code}); nothing was rolled out: "
                               f"{cfg.env} keeps serving the previous version. Output:\n{exc.output_tail}") from None
        finally:
            run.run(swarm.rm_cmd(p.migrate_env), hide=True, check=False, timeout=t)
    run.run(swarm.stack_deploy_cmd(cfg, p.stack), timeout=t)
    wait_update(cfg, run, "app", swarm.parse_update_status(prior.stdout) if existed else None, image)
    if cfg.proxy:
        wait_running(cfg, run, "proxy", 1)
    health(cfg, run, tag)


def finish(cfg, run, outcome: Outcome, action: str) -> None:
    """Always: append the audit line, then release the lock. A failure here is reported, not hidden."""
    line = swarm.audit_line(when=now(), who=who(), action=action, env=cfg.env, git=_safe_git(),
                            image=outcome.image, digest=outcome.digest, result=outcome.result)
    problems = []
    try:
        run.run(swarm.finish_cmd(cfg), stdin=line, hide=True, timeout=cfg.command_timeout)
    except (CommandFailed, OSError, EOFError) as exc:
        problems.append(str(exc).splitlines()[0])
    if problems:
        run.out.write("warning: " + "; ".join(problems) +
                      f"\nwarning: the deploy lock may still be held: `inv unlock --env {cfg.env}` once you checked\n")


def _safe_git() -> str:
    try:
        return git_tag()
    except ToolkitError:
        return "-"


def rollback(cfg, *, to: str | None = None, dry_run: bool = False, out=sys.stdout) -> Outcome:
    """Roll back to ``to`` (a tag in the registry) or to the previous successful deploy in the audit log.

    No build, no push, no migration (a newer schema stays: migrations must be backward compatible)."""
    if to is None:
        if dry_run:
            to = "PREVIOUS"  # read from the audit log at run time
        else:
            to = previous_tag(cfg, out)
    return deploy(cfg, tag=to, build=False, migrate=False, action="rollback", dry_run=dry_run, out=out)


def previous_tag(cfg, out=sys.stdout) -> str:
    run = ssh.remote_runner(cfg, out=out)
    try:
        text = run.run(swarm.audit_show_cmd(cfg, 1000), hide=True, check=False, timeout=cfg.command_timeout).stdout
    finally:
        run.ctx.close()
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
