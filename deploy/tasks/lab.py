"""Tasks: the lab (engine, base images, registry, SSH Swarm manager), provisioned from the project's files."""

from __future__ import annotations

from ._base import task


def _runner(c, quiet: bool = False):
    from ..runner import Runner

    return Runner(ctx=c, echo=not quiet)


@task(help={"quiet": "print only the summary line, not every command"})
def up(c, quiet=False):
    """Provision the lab idempotently (a second run takes seconds)."""
    from ..lab import provision

    provision.up(_runner(c, quiet))


@task(help={"yes": "confirm: remove everything this lab made (its state file says what)"})
def down(c, yes=False):
    """Remove what the lab made, and nothing else."""
    from ..errors import ToolkitError
    from ..lab import paths, provision

    if not yes:
        raise ToolkitError(f"lab.down removes the lab at {paths.LAB_DIR} and what it started; "
                           "pass --yes to confirm")
    provision.down(_runner(c))


@task
def status(c):
    """Show what of the lab is up, one line per component."""
    from ..lab import provision

    for name, ok, text in provision.status():
        print(f"{'up  ' if ok else 'DOWN'}  {name:<28} {text}")
