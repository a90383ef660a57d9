"""Tasks: the local stack (docker-compose.yml): up, down, logs, ps, shell, manage, migrate.

Thin: settings come from deploy.local.localenv (validated by deploy.local.compose before any side effect), commands
from deploy.local.compose, the `inv up` steps from deploy.local.lifecycle / deploy.local.image_pin. Interactive
commands (shell, manage, logs --follow) replace this process with `docker compose ...` (os.execvp) so the
terminal passes straight through: a real TTY, Ctrl-C and the exit code belong to the command.
"""

from __future__ import annotations

import os
import sys

from deploy.core.errors import ToolkitError
from deploy.tasks._base import task


def _stack(c):
    """Validated settings (before any side effect) and a redacting Runner, after the compose/engine preflight."""
    import dataclasses

    from deploy.local import appsettings, compose, lifecycle, localenv
    from deploy.core.runner import Runner

    values = localenv.load()
    settings = compose.StackSettings.from_values(values, environ=os.environ)
    app_env, app_secrets = appsettings.collect(values, settings.root, os.environ)   # APP_ENV_*/APP_SECRET_* in .env
    runner = Runner(ctx=c, secrets=settings.secrets + tuple(v for _, v in app_secrets))
    lifecycle.preflight(runner)
    extra = appsettings.write(settings.root, app_env, app_secrets, settings.project)
    if extra:  # the generated compose file passing them to the app (names and secret files, never values)
        settings = dataclasses.replace(settings, files=settings.files + (extra,))
    return settings, runner


def remainder(argv=None) -> list[str]:
    """The arguments after `--` on the command line (`inv manage -- check --deploy`), quoting kept."""
    argv = sys.argv if argv is None else argv
    return list(argv[argv.index("--") + 1:]) if "--" in argv else []


def _exec(runner, argv) -> None:
    """Echo (redacted, on stderr) and become ``argv``: stdin, the TTY and the exit code pass straight through."""
    sys.stderr.write(f"[{runner.where}] $ {runner.describe(argv)}\n")
    sys.stderr.flush()
    sys.stdout.flush()
    os.execvp(argv[0], argv)


def _tty() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _running_image(runner, s) -> str:
    """The image of the stack's app container: one-off commands run exactly what `inv up` started."""
    from deploy.local.compose import APP, by_service
    from deploy.local.lifecycle import containers

    app = by_service(containers(runner, s)).get(APP)
    if app is None or not app.image:
        raise ToolkitError(f"the stack is not up (project {s.project} has no app container); run `inv up` first")
    return app.image


@task(help={
    "follow": "tail the logs of every service after the stack is up (Ctrl-C stops tailing, not the stack)",
    "timeout": "seconds to wait for the stack to become healthy (default 120)",
    "tag": "run this existing image tag (e.g. a released abc1234) instead of building the current tree",
})
def up(c, follow=False, timeout=120, tag=None):
    """Build the app image if needed, start the stack and wait until the app answers."""
    from deploy.local import compose, image_pin, lifecycle
    from deploy.core import gitinfo

    if int(timeout) <= 0:
        raise ToolkitError(f"--timeout {timeout}: give a positive number of seconds, e.g. --timeout 120")
    s, runner = _stack(c)
    lifecycle.check_port(s, lifecycle.containers(runner, s))
    lifecycle.check_postgres_image(runner, s)
    if tag:
        ref = image_pin.pinned(runner, s, tag)
    else:
        ref = image_pin.ensure(runner, s, gitinfo.current_tag(s.root))
    lifecycle.start(runner, s, ref, float(timeout))
    print(f"ready: {s.url} ({ref}, project {s.project})")
    if follow:
        _exec(runner, compose.logs_argv(s, follow=True, tail=0))


@task(help={
    "volumes": "also delete the stack's volumes: the database is lost (asks first)",
    "yes": "do not ask before deleting volumes (for scripts)",
})
def down(c, volumes=False, yes=False):
    """Stop and remove the stack's containers; the database volume stays unless --volumes."""
    from deploy.local import compose

    s, runner = _stack(c)
    if volumes and not yes:
        _confirm(f"delete the volumes of project {s.project} (its database)")
    runner.run(compose.down_argv(s, volumes=volumes))


def _confirm(what: str) -> None:
    if not sys.stdin.isatty():
        raise ToolkitError(f"refusing to {what} without confirmation; pass --yes to confirm")
    answer = input(f"This will {what}. It cannot be undone. Type 'yes' to go on: ")
    if answer.strip().lower() != "yes":
        raise ToolkitError("nothing deleted (not confirmed); the stack and its data are unchanged")


# Every task's help= dict has this shape (`duplicates` pairs it with dev.test): it is Invoke's flag documentation.
# Invoke has no optional positional arguments (a positional one is always required): the service is a flag,
# `inv logs -s db`.
@task(help={
    "service": "only this service (app or db); default all",
    "follow": "keep following new log lines (Ctrl-C stops)",
    "tail": "only the last N lines of each service",
    "env": "show the logs of a deployed environment (Swarm) instead of the local stack",
})
def logs(c, service=None, follow=False, tail=None, env=None):
    """Show the stack's logs (or a deployed environment's with --env)."""
    if env:
        if service or tail:
            raise ToolkitError("--env shows every service of the environment; drop --service and --tail")
        from deploy.ship.logs import logs as swarm_logs

        return swarm_logs(env, follow)
    from deploy.local import compose

    if tail is not None and not str(tail).isdigit():
        raise ToolkitError(f"--tail {tail!r}: give a number of lines, e.g. --tail 50")
    s, runner = _stack(c)
    argv = compose.logs_argv(s, service, follow=follow, tail=None if tail is None else int(tail))
    if follow:
        _exec(runner, argv)
    runner.run(argv)


@task
def ps(c):
    """List the stack's containers with their state and health."""
    from deploy.local import compose

    s, runner = _stack(c)
    runner.run(compose.ps_argv(s))


@task(help={
    "django": "open the Django shell (manage.py shell) instead of bash",
    "command": "run this command (bash -c, or Python with --django) and exit; or pass a program after --",
})
def shell(c, django=False, command=None):
    """Open a shell in a one-off app container (bash, or the Django shell with --django)."""
    from deploy.local import compose

    argv = compose.shell_command(django, command, remainder())
    s, runner = _stack(c)
    _exec(runner, compose.run_argv(s, _running_image(runner, s), argv, tty=_tty()))


@task
def manage(c):
    """Run a manage.py command in a one-off app container: inv manage -- ARGS."""
    from deploy.local import compose

    argv = compose.manage_command(remainder())
    s, runner = _stack(c)
    _exec(runner, compose.run_argv(s, _running_image(runner, s), argv, tty=_tty()))


@task(help={"plan": "show the migration plan first, then apply it"})
def migrate(c, plan=False):
    """Apply the database migrations in a one-off app container."""
    from deploy.local import compose

    s, runner = _stack(c)
    image = _running_image(runner, s)
    for argv in compose.migrate_commands(plan):
        runner.run(compose.run_argv(s, image, argv, tty=False))
