"""Tasks: ship the app to a Swarm environment (push, deploy, rollback, status, audit, unlock).

Every task loads and validates deploy/<env>.env first: nothing touches the registry or the manager
until the whole configuration is valid. Heavy imports stay inside the task bodies.
"""

from deploy.tasks._base import task

ENV_HELP = "environment name: the settings in deploy/<env>.env (e.g. prod, staging, lab)"


def _config(env, **flags):
    from deploy.ship import config

    return config.load(env, flags=flags)


@task(help={"env": ENV_HELP, "tag": "local image tag to push (default: git short SHA, with -dirty)"})
def push(c, env, tag=None):
    """Tag the app image with the registry and git SHA, push it, print the digest."""
    from deploy.core import gitinfo
    from deploy.local import localenv
    from deploy.ship import registry

    cfg = _config(env)
    tag = tag or gitinfo.current_tag()
    registry.check(cfg)
    digest = registry.push(cfg, f"{localenv.load()['APP_IMAGE']}:{tag}", tag)
    print(f"pushed {cfg.image_ref(tag)}@{digest}")


@task(help={"env": ENV_HELP, "image": "deploy this tag from the registry (skips build and push)",
            "dry_run": "read the environment's state (read-only, no lock) and print the plan's steps; run none",
            "replicas": "number of app replicas (overrides REPLICAS of the env file and DJDEPLOY_REPLICAS)",
            "allow_dirty": "deploy an image of a tree with uncommitted changes (-dirty tag) to this environment"})
def deploy(c, env, image=None, dry_run=False, replicas=None, allow_dirty=False):
    """Plan, then lock, build, push, migrate once and roll out to ENV with zero downtime (rollback on failure)."""
    from deploy.ship import executor

    cfg = _config(env, REPLICAS=replicas, ALLOW_DIRTY="on" if allow_dirty else None)
    executor.deploy(cfg, tag=image, build=image is None, dry_run=dry_run)


@task(help={"env": ENV_HELP, "to": "tag to roll back to (default: the previous successful deploy in the audit log)",
            "dry_run": "read the environment's state (read-only, no lock) and print the plan's steps; run none",
            "allow_dirty": "allow rolling back to an image of a tree with uncommitted changes (-dirty tag)"})
def rollback(c, env, to=None, dry_run=False, allow_dirty=False):
    """Roll ENV back to a known earlier image (an unknown tag is refused)."""
    from deploy.ship import executor

    executor.rollback(_config(env, ALLOW_DIRTY="on" if allow_dirty else None), to=to, dry_run=dry_run)


@task(help={"env": ENV_HELP})
def status(c, env):
    """Show ENV's services, replicas, images and last update state."""
    from deploy.ship import info

    info.status(_config(env))


@task(help={"env": ENV_HELP, "lines": "how many audit lines to show (default 50)",
            "last": "show the step timing table of the last deploy or rollback instead"})
def audit(c, env, lines=50, last=False):
    """Show the deploy audit log kept on ENV's manager."""
    from deploy.ship import info

    cfg = _config(env)
    info.last_steps(cfg) if last else info.audit(cfg, int(lines))


@task(help={"env": ENV_HELP})
def unlock(c, env):
    """Release a stale deploy lock on ENV's manager (says who held it)."""
    from deploy.ship import executor

    executor.unlock(_config(env))
