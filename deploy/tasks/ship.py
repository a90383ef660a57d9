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
            "dry_run": "print every local and remote command (secrets redacted) and run none"})
def deploy(c, env, image=None, dry_run=False):
    """Build, push, migrate once and roll out to ENV with zero downtime (rollback on failure)."""
    from deploy.ship import executor

    executor.deploy(_config(env), tag=image, build=image is None, dry_run=dry_run)


@task(help={"env": ENV_HELP, "to": "tag to roll back to (default: the previous successful deploy in the audit log)",
            "dry_run": "print every command and run none"})
def rollback(c, env, to=None, dry_run=False):
    """Roll ENV back to a known earlier image (an unknown tag is refused)."""
    from deploy.ship import executor

    executor.rollback(_config(env), to=to, dry_run=dry_run)


@task(help={"env": ENV_HELP})
def status(c, env):
    """Show ENV's services, replicas, images and last update state."""
    from deploy.ship import info

    info.status(_config(env))


@task(help={"env": ENV_HELP, "lines": "how many audit lines to show (default 50)"})
def audit(c, env, lines=50):
    """Show the deploy audit log kept on ENV's manager."""
    from deploy.ship import info

    info.audit(_config(env), int(lines))


@task(help={"env": ENV_HELP})
def unlock(c, env):
    """Release a stale deploy lock on ENV's manager (says who held it)."""
    from deploy.ship import executor

    executor.unlock(_config(env))
