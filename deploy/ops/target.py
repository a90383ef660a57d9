"""Where a stack's database lives: the local compose stack or a deployed Swarm environment.

A ``Target`` holds only validated values (built from deploy.local.compose.StackSettings or from
deploy.ship.config.DeployConfig); the commands for both are the same builders (deploy.ops.backup), run
by a local Runner or by a Runner on the manager. Nothing here runs anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from deploy.core import project


@dataclass(frozen=True)
class Target:
    env: str                 # "" for the local stack, else the environment name
    label: str               # the stack's name in labels and messages (compose project or Swarm stack)
    network: str             # the network the one-off containers join (the database answers there as `db`)
    backup_dir: str          # absolute path on the host that runs the engine
    postgres_image: str
    db_user: str
    db_name: str
    password: str = field(repr=False)
    user: str = ""           # --user for one-off containers (local: the developer, so backups stay theirs)
    remote_dir: str = ""     # env only: the deploy dir on the manager (lock, audit log)
    db_host: str = "db"      # the stack's own db service; DATABASE=external: the managed Postgres's host
    db_port: str = "5432"
    docker_config: str = ""  # env only: the client config the deploy logged in to the registry with

    @property
    def local(self) -> bool:
        return not self.env

    @property
    def flag(self) -> str:
        """The CLI flag that names this target again, for messages: '' or ' --env prod'."""
        return f" --env {self.env}" if self.env else ""

    @property
    def what(self) -> str:
        return f"environment {self.env}" if self.env else f"the local stack (project {self.label})"


def local_backup_dir(environ: dict | None = None) -> Path:
    """Local backups: $DJDEPLOY_BACKUP_DIR, else ./backups under the project root (git-ignored)."""
    environ = os.environ if environ is None else environ
    return Path(environ.get("DJDEPLOY_BACKUP_DIR") or project.ROOT / "backups").resolve()


def from_local(settings, values: dict, environ: dict | None = None, uid: int | None = None,
               gid: int | None = None) -> Target:
    """The local compose stack: its default network, Postgres credentials from .env / defaults."""
    uid = os.getuid() if uid is None else uid
    gid = os.getgid() if gid is None else gid
    return Target(env="", label=settings.project, network=f"{settings.project}_default",
                  backup_dir=str(local_backup_dir(environ)), postgres_image=settings.postgres_image,
                  db_user=values.get("POSTGRES_USER") or "djapp", db_name=values.get("POSTGRES_DB") or "djapp",
                  password=values.get("POSTGRES_PASSWORD") or "", user=f"{uid}:{gid}")


def from_env(cfg) -> Target:
    """A Swarm environment: the stack's attachable overlay network, backups beside the audit log."""
    from deploy.ship import stackfile, swarm

    where = dict(db_user=stackfile.DB_USER, db_name=stackfile.DB_NAME, password=cfg.postgres_password)
    if getattr(cfg, "database", "stack") == "external":  # the managed Postgres of DATABASE_URL, reached from the stack's network
        url = urlsplit(cfg.database_url)
        where = dict(db_user=unquote(url.username or ""), db_name=url.path.lstrip("/"),
                     password=unquote(url.password or ""), db_host=url.hostname or "", db_port=str(url.port or 5432))
    return Target(env=cfg.env, label=cfg.stack_name, network=stackfile.network(cfg),
                  backup_dir=swarm.paths(cfg).dir + "/backups", postgres_image=cfg.postgres_image,
                  remote_dir=swarm.paths(cfg).dir, docker_config=swarm.paths(cfg).docker_config, **where)
