"""The plan of a deploy or a rollback: an ordered list of typed steps, made by PURE functions.

The layers: deploy.ship.config (validated settings) -> deploy.ship.swarm / stackfile (command and file
builders) -> this module (which steps, in which order) -> deploy.ship.executor (runs exactly these steps,
timing each) -> deploy.tasks.ship (thin tasks).

A plan is made from the validated configuration, what is shipped (a ``Release``) and the environment's
state (an ``EnvState``: read-only facts, see deploy.ship.state). Where the plan needs state: which
versioned secrets exist (only missing ones are created), whether the app service exists (a new service is
waited for until its replicas run; an existing one until its update completes), and whether the image tag
is already in the registry (its digest pins the release; a clean tag that is there is not rebuilt). Both
the dry run and the real run read that state the same way before planning (the dry run takes no lock and
changes nothing); the real run reads it again under the lock (step 2) and stops before any change if it
differs. So a dry run prints exactly the steps a real deploy records, polls included.

Adding a step is one line in ``build_deploy_plan`` (or one of its parts), e.g.
``steps.append(run("what it does", argv))``, ``put(...)``, or ``check("what", action)`` where
``action(job, step) -> str`` is a function (see deploy.ship.actions) returning a note for the timing table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from deploy.core.runner import quote
from deploy.ops import deploy_steps
from deploy.ship import actions, stackfile, swarm
from deploy.ship.wait import HEALTH_STREAK, HEALTH_TIMEOUT

RUN, PUT, POLL, CHECK, BUILD, PUSH = "run", "put", "poll", "check", "build", "push"
LOCAL, MANAGER = "local", "manager"


@dataclass(frozen=True)
class Step:
    """One step. ``what`` says what it does (the timing table); ``detail`` the command, file or poll (the plan).
    ``stdin``/``content`` (str, or a function of the running job) carry secrets and are never printed."""

    kind: str
    where: str
    what: str
    detail: str = ""
    argv: tuple = ()
    path: str = ""
    action: object = None          # fn(job, step) -> note; None: the kind's default (run argv, put content)
    args: tuple = ()
    hide: bool = True              # RUN: do not stream the command's output
    ok_output: str = ""            # RUN: a failure whose output contains this counts as done
    fail: str = ""                 # RUN: the error for a non-zero exit ({code}, {tail}, {env})
    always: bool = False           # runs also after an earlier step failed (cleanup, audit, unlock)
    stdin: object = field(default=None, compare=False, repr=False)
    content: object = field(default=None, compare=False, repr=False)

    def line(self) -> str:
        return f"[{self.where}] {self.kind} {self.what}" + (f": {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class Release:
    """What is shipped: ``action`` deploy or rollback, the image tag, and how."""

    action: str
    tag: str
    build: bool
    migrate: bool
    dirty: bool
    owner: str            # the lock's owner line: who, pid, since, action, image
    stamp: str            # DJDEPLOY_RELEASE: makes every deploy an observable update
    allow_unsafe: bool = False  # migrations that break the running release are allowed (deploy.ops)


@dataclass(frozen=True)
class EnvState:
    """Read-only facts the plan depends on. ``app``: (update state, started at) of the app service, None
    when there is none; ``secrets``: names of the stack's secrets; ``digest``: the tag's digest in the
    registry, None when the tag is not there."""

    app: tuple | None = None
    secrets: frozenset = frozenset()
    digest: str | None = None

    def describe(self) -> str:
        app = "no app service yet" if self.app is None else f"app service exists ({self.app[0] or 'never updated'})"
        tag = "image tag not in the registry" if self.digest is None else f"image tag in the registry ({self.digest})"
        return f"{app}, {len(self.secrets)} stack secret(s), {tag}"


@dataclass(frozen=True)
class Plan:
    title: str
    steps: tuple
    state: EnvState


def run(what, argv, *, where=MANAGER, **kw) -> Step:
    return Step(RUN, where, what, detail=quote(argv), argv=tuple(argv), **kw)


def put(what, path, content, **kw) -> Step:
    return Step(PUT, MANAGER, what, detail=f"{path} (mode 0600)", path=path, content=content, **kw)


def poll(what, action, *args, detail="", where=MANAGER) -> Step:
    return Step(POLL, where, what, detail=detail, action=action, args=args)


def check(what, action, *args, detail="", where=MANAGER) -> Step:
    return Step(CHECK, where, what, detail=detail, action=action, args=args)


def builds_here(rel: Release, state: EnvState) -> bool:
    """Build and push unless the tag is already in the registry (tags are immutable; a -dirty one is not)."""
    return rel.build and (state.digest is None or rel.dirty)


def build_deploy_plan(cfg, rel: Release, state: EnvState, proxy_text: str) -> Plan:
    """Every step of a deploy (or, with ``rel.migrate`` off and no build, a rollback), in order:
    lock -> build and push -> the manager steps -> audit and unlock."""
    image = cfg.image_ref(rel.tag)
    from deploy.ops import backup_image
    from deploy.ship import edge_steps

    steps = _lock_steps(cfg, rel, state) + _image_steps(cfg, rel, state) + edge_steps.image_steps(cfg)
    steps += backup_image.image_steps(cfg)   # BACKUP_S3_BUCKET: POSTGRES_IMAGE + Perl's TLS, before any change
    steps += _upload_steps(cfg, rel, state, proxy_text)
    if rel.migrate:
        steps += _base_and_migrate_steps(cfg, rel, state, proxy_text)
    steps += _rollout_steps(cfg, rel, state) + _backup_service_steps(cfg, rel, proxy_text)
    steps.append(run("append the audit line and the step timings, release the lock", swarm.finish_cmd(cfg),
                     stdin=actions.finish_input, always=True))
    return Plan(title=f"{rel.action} {image} to {cfg.env}", steps=tuple(steps), state=state)


def _lock_steps(cfg, rel, state) -> list:
    p = swarm.paths(cfg)
    return [run(f"take the deploy lock {p.lock} (owner line on stdin)", swarm.lock_cmd(cfg), stdin=rel.owner,
                action=actions.take_lock),
            check("that the environment is as planned (app service, secrets, registry tag)", actions.confirm_state,
                  detail=state.describe())]


def bridges_here(cfg, rel: Release, state: EnvState) -> bool:
    """A tag that is not built here (a rollback, `--image`) ships its image plus the hashed static files of the other
    recent releases (pages of those are still open): a small image on top, pushed as <tag>-static
    (deploy.image.bridge). A build here bridges inside its build step."""
    return not builds_here(rel, state) and getattr(cfg, "static_releases", 0) > 0


def _image_steps(cfg, rel, state) -> list:
    if bridges_here(cfg, rel, state):
        return [Step(BUILD, LOCAL, f"{rel.tag} plus the hashed static files of the other recent releases",
                     detail="deploy.image.bridge (FROM the tag's registry digest)", action=actions.bridge_release),
                Step(PUSH, LOCAL, f"{cfg.image_ref(rel.tag)}-static to the registry (unless nothing was added)",
                     detail="its digest pins the rollback", action=actions.push_bridged)]
    if not builds_here(rel, state):
        return []
    ref = cfg.image_ref(rel.tag)
    return [Step(BUILD, LOCAL, f"the app image tagged {rel.tag}", detail="deploy.image.builder.build",
                 action=actions.build_image),
            Step(PUSH, LOCAL, f"{ref} to the registry (Docker SDK, credentials in the auth header)",
                 detail="its digest pins the release", action=actions.push_image)]


def _upload_steps(cfg, rel, state, proxy_text) -> list:
    p = swarm.paths(cfg)
    pinned = _pinned(cfg, rel, state)
    name = stackfile.proxy_config_name(cfg, proxy_text)
    # start-first either way (the old tasks serve until the new ones are healthy); a rollback replaces every task at
    # once, a deploy ROLLOUT_PARALLELISM at a time (default 0: all, one task start instead of one per replica)
    parallelism = cfg.rollout_parallelism if rel.migrate else 0

    def stack(job):  # the app alone: the rollout's `stack deploy` updates one service, so a rerun is safe
        return stackfile.render(stackfile.stack_spec(cfg, job.pinned, rel.tag, rel.stamp, name, only=("app",),
                                                     parallelism=parallelism))

    steps = [put(f"the stack file (app image {pinned})", p.stack, stack)]
    if cfg.proxy:
        steps.append(put("the proxy config", p.proxy_cfg, proxy_text))
    steps.append(run("log the manager in to the registry (password on stdin)", swarm.login_cmd(cfg),
                     stdin=cfg.registry_password + "\n"))
    values = stackfile.secret_values(cfg)
    for key, secret in stackfile.secret_names(cfg).items():
        if secret not in state.secrets:
            steps.append(run(f"create the secret {secret} (value on stdin)", swarm.secret_create_cmd(cfg, key, secret),
                             stdin=values[key], ok_output="already exists"))
    return steps


def _base_and_migrate_steps(cfg, rel, state, proxy_text) -> list:
    p = swarm.paths(cfg)
    from deploy.ship import edge_steps

    only = stackfile.base_services(cfg)   # no db service with DATABASE=external
    name = stackfile.proxy_config_name(cfg, proxy_text)

    def base(job):
        return stackfile.render(stackfile.stack_spec(cfg, job.pinned, rel.tag, rel.stamp, name, only=only))

    if only:
        steps = [put(f"the base stack file ({', '.join(only)})", p.base, base),
                 run(f"deploy {' and '.join(only)}", swarm.stack_deploy_cmd(cfg, p.base), hide=False)]
    else:
        make = run("create the stack's network", swarm.network_create_cmd(cfg), ok_output="already exists")
        steps = [] if getattr(cfg, "network", "") else [make]
    if "db" in only:
        steps.append(_wait_running(cfg, "db", 1))
    steps += edge_steps.certs_steps(cfg, proxy_text)
    return steps + [
            put("the migration's environment", p.migrate_env, swarm.migrate_env(cfg)),
            *deploy_steps.steps(cfg, rel, state),  # the migration-safety check and the pre-migrate backup
            run("migrate the database once (a one-off container of the new image)",
                swarm.migrate_cmd(cfg, _pinned(cfg, rel, state)), action=actions.migrate, hide=False,
                fail="migration failed (exit {code}); nothing was rolled out: {env} keeps serving the previous "
                     "version. Output:\n{tail}"),
            run("remove the migration's environment", swarm.rm_cmd(p.migrate_env), always=True)]


def _pinned(cfg, rel, state) -> str:
    """The app image as the stack names it: repo:tag@sha256:digest (the push's digest, or the registry's)."""
    pushed = builds_here(rel, state) or bridges_here(cfg, rel, state)
    return f"{cfg.image_ref(rel.tag)}@{'<digest of the push>' if pushed else state.digest}"


def _wait_running(cfg, name: str, replicas: int) -> Step:
    cmd = swarm.running_cmd(cfg, name)
    return poll(f"until {stackfile.service(cfg, name)} runs {replicas} healthy task(s)", actions.wait_running,
                name, replicas, detail=f"poll `{quote(cmd)}` up to {cfg.converge_timeout:g}s")


def _rollout_steps(cfg, rel, state) -> list:
    p = swarm.paths(cfg)
    svc = stackfile.service(cfg, "app")
    from deploy.ship import edge_steps

    steps = edge_steps.trusted_proxy_steps(cfg)
    steps.append(run("roll out the app (stack deploy)", swarm.stack_deploy_cmd(cfg, p.stack), hide=False))
    if state.app is None:
        steps.append(_wait_running(cfg, "app", cfg.replicas))
    else:
        cmd = swarm.update_status_cmd(cfg, "app")
        steps.append(poll(f"until {svc} has converged (completed; rollback_completed = failure)",
                          actions.wait_update, "app", tuple(state.app),
                          detail=f"poll `{quote(cmd)}` up to {cfg.converge_timeout:g}s"))
    if cfg.proxy:
        steps.append(_wait_running(cfg, "proxy", 1))
    steps.append(check(f"that {cfg.health_url} (Host: {cfg.health_host}) serves X-App-Version {rel.tag}",
                       actions.check_health, where=LOCAL,
                       detail=f"{HEALTH_STREAK} answers in a row 200 with that version, up to {HEALTH_TIMEOUT:g}s"))
    return steps


def _backup_service_steps(cfg, rel, proxy_text) -> list:
    """BACKUP_SCHEDULE=on: the backup service names its dumps after the release the database now serves, so it is
    updated after the rollout (its own stack file: each `stack deploy` touches one service)."""
    if not getattr(cfg, "backup_schedule", False):
        return []
    p = swarm.paths(cfg)
    name = stackfile.proxy_config_name(cfg, proxy_text)

    def stack(job):
        return stackfile.render(stackfile.stack_spec(cfg, job.pinned, rel.tag, rel.stamp, name, only=("backup",)))

    return [put("the backup service's stack file", p.backup, stack),
            run("deploy the scheduled backups (release label of this release)", swarm.stack_deploy_cmd(cfg, p.backup),
                hide=False)]
