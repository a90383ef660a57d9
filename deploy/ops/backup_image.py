"""The backup service's image when off-site copies are configured (BACKUP_S3_BUCKET): deploy/ops/backup-image.

POSTGRES_IMAGE plus Perl's TLS and the CA bundle (see the recipe), tagged ``b<hash>`` by the recipe and
POSTGRES_IMAGE (deploy.ship.recipe_image), built on this machine and pushed to the environment's registry as
BACKUP_IMAGE (default djbackup) by one local step of the deploy, before any change on the manager; a tag the
registry has is not rebuilt. Without a bucket the backup service runs POSTGRES_IMAGE itself (nothing is built).
"""

from __future__ import annotations

import sys
from pathlib import Path

from deploy.ship import recipe_image

RECIPE_DIR = Path(__file__).resolve().parent / "backup-image"
FILES = ("Dockerfile",)


def recipe_tag(postgres_image: str, recipe_dir: Path = RECIPE_DIR) -> str:
    return "b" + recipe_image.recipe_hash(postgres_image, recipe_dir, FILES)


def ref(cfg) -> str:
    return f"{cfg.registry}/{cfg.backup_image}:{recipe_tag(cfg.postgres_image)}"


def image(cfg) -> str:
    """What the backup service (and the one-off bucket listing) runs."""
    return ref(cfg) if getattr(cfg, "offsite", False) else cfg.postgres_image


def build(cfg, tag: str, out=sys.stdout) -> str:
    """Build the backup image FROM POSTGRES_IMAGE through the SDK; return the local ref."""
    return recipe_image.build(RECIPE_DIR, f"{cfg.backup_image}:{tag}", {"POSTGRES_IMAGE": cfg.postgres_image},
                              {"djdeploy.backup-image": tag}, f"the backup image FROM {cfg.postgres_image}",
                              "is POSTGRES_IMAGE present or pullable (`inv lab.up` builds the lab's)?", out=out)


def ensure(cfg, out=sys.stdout) -> str:
    """The backup image's registry ref; built and pushed when the registry does not have this recipe yet."""
    return recipe_image.ensure(cfg, cfg.backup_image, recipe_tag(cfg.postgres_image),
                               lambda tag: build(cfg, tag, out), out=out)


def image_steps(cfg) -> list:
    """One local step, before the SSH work: only when the backups are copied off-site."""
    from deploy.ship import plan

    if not getattr(cfg, "offsite", False):
        return []
    return [plan.Step(plan.BUILD, plan.LOCAL, f"the backup image {ref(cfg)} unless the registry has it",
                      detail=f"FROM {cfg.postgres_image} + Perl TLS and CA certificates, deploy/ops/backup-image "
                             f"(tag = hash of the recipe)", action=ensure_image)]


def ensure_image(job, step) -> str:
    return ensure(job.cfg, out=job.out)
