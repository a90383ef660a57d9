"""Tasks: the lab (engine, base images, registry, SSH Swarm manager), provisioned from the project's files."""

from __future__ import annotations

from deploy.tasks._base import task


def _runner(c, quiet: bool = False):
    from deploy.core.runner import Runner

    return Runner(ctx=c, echo=not quiet)


@task(help={"quiet": "print only the summary line, not every command",
            "nodes": "also bring up a lab cluster of N nodes (N > 1; see `inv cluster.up --help` for its options)"})
def up(c, quiet=False, nodes=1):
    """Provision the lab idempotently (a second run takes seconds)."""
    from deploy.core.errors import ToolkitError
    from deploy.lab import provision

    nodes = int(nodes)
    if nodes < 1:
        raise ToolkitError(f"--nodes must be 1 or more (got {nodes})")
    provision.up(_runner(c, quiet))
    if nodes > 1:
        from deploy.lab import cluster

        spec = cluster.up(nodes=nodes, echo=not quiet)
        for line in cluster.status(spec.name):
            print(line)


@task(help={"yes": "confirm: remove everything this lab made (its state file says what)"})
def down(c, yes=False):
    """Remove what the lab made, and nothing else."""
    from deploy.core.errors import ToolkitError
    from deploy.lab import paths, provision

    if not yes:
        raise ToolkitError(f"lab.down removes the lab at {paths.LAB_DIR} and what it started; "
                           "pass --yes to confirm")
    from deploy.lab import cluster, cluster_state

    for name in cluster_state.existing_names():  # this lab's clusters first (their files live in LAB_DIR)
        removed = cluster.down(name)
        print(f"removed cluster {name}: " + (", ".join(removed) if removed else "nothing left"))
    provision.down(_runner(c))


@task
def status(c):
    """Show what of the lab is up, one line per component."""
    from deploy.lab import provision

    for name, ok, text in provision.status():
        print(f"{'up  ' if ok else 'DOWN'}  {name:<28} {text}")
