"""Scheduled backups without a laptop: a ``backup`` service in the stack (BACKUP_SCHEDULE=on).

The service runs the Postgres image (already on the manager for ``db``; with off-site copies, the backup image
built FROM it, deploy.ops.backup_image) with a small shell loop: every
BACKUP_POLL seconds it checks the newest *scheduled* backup's age; when it is older than BACKUP_INTERVAL it
takes one with the same dump script as `inv db.backup` (deploy.ops.backup.DUMP_SCRIPT: temporary names,
verified, sidecar renamed last), then applies the retention: the newest scheduled backup of each of the
last BACKUP_KEEP_DAILY days and of each of the last BACKUP_KEEP_WEEKLY ISO weeks stay, other scheduled
ones go (sidecar first, so a half-removed backup never looks complete). Manual and pre-migrate backups are
never removed by it. The due time comes from the files, so a restart (every deploy updates the service)
neither skips nor repeats a backup. Pinned to a manager: the backups dir is a bind mount there.
With BACKUP_S3_BUCKET, every round (each poll, whether or not a backup was due) ends with the off-site sync
(deploy.ops.offsite: missing copies uploaded, retention in the bucket); its failure is an ERROR line and
the next round retries.
"""

from __future__ import annotations

from deploy.ops import backup, backup_image, offsite

LOOP = r'''set -u
interval="$BACKUP_INTERVAL"; poll="$BACKUP_POLL"
echo "backup: every ${interval}s, keep ${KEEP_DAILY} daily and ${KEEP_WEEKLY} weekly"
[ -z "${S3_BUCKET:-}" ] || echo "backup: off-site copies to s3://$S3_BUCKET/$S3_PREFIX/ at $S3_ENDPOINT"
scheduled() { grep -l '^reason=scheduled$' /backups/*.dump.meta 2>/dev/null | sort -r; }
take() {
  name="$(date -u +%Y%m%dT%H%M%SZ)-$RELEASE.dump"
  { cat /run/secrets/postgres_password; echo; } | sh -c "$DUMP_SCRIPT" backup "$name" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$RELEASE" scheduled || echo "backup: FAILED $name (retrying in ${poll}s)"
}
prune() {
  days=""; weeks=""; nd=0; nw=0
  for m in $(scheduled); do
    n="${m##*/}"; n="${n%.meta}"; day="${n%%T*}"; week="$(date -u -d "$day" +%G%V)"; keep=""
    case " $days " in *" $day "*) ;; *) if [ "$nd" -lt "$KEEP_DAILY" ]; then days="$days $day"; nd=$((nd+1)); keep=1; fi;; esac
    case " $weeks " in *" $week "*) ;; *) if [ "$nw" -lt "$KEEP_WEEKLY" ]; then weeks="$weeks $week"; nw=$((nw+1)); keep=1; fi;; esac
    [ -n "$keep" ] || { rm -f "/backups/$n.meta" "/backups/$n"; echo "backup: retention removed $n"; }
  done
}
while :; do
  newest="$(scheduled | head -n 1)"; now="$(date +%s)"
  if [ -z "$newest" ] || [ $((now - $(stat -c %Y "$newest"))) -ge "$interval" ]; then take; prune; fi
  [ -z "${S3_BUCKET:-}" ] || perl -e "$S3_SCRIPT" sync || echo "backup: off-site sync incomplete (retrying in ${poll}s)"
  sleep "$poll" & wait $!
done
'''


def service(cfg, tag: str) -> dict:
    """The stack's ``backup`` service (compose v3.8): ``$`` doubled, as the stack file interpolates it."""
    from deploy.ops.target import from_env

    t = from_env(cfg)
    env = {"PGHOST": "db", "PGUSER": t.db_user, "PGDATABASE": t.db_name, "MIGRATIONS_SQL": backup.MIGRATIONS_SQL,
           "BACKUP_INTERVAL": str(cfg.backup_interval), "BACKUP_POLL": str(min(60, cfg.backup_interval)),
           "KEEP_DAILY": str(cfg.backup_keep_daily), "KEEP_WEEKLY": str(cfg.backup_keep_weekly),
           "RELEASE": backup.safe_release(tag), "DUMP_SCRIPT": backup.DUMP_SCRIPT, **offsite.environment(cfg)}
    return {
        "image": backup_image.image(cfg),   # POSTGRES_IMAGE, or with BACKUP_S3_BUCKET that plus Perl's TLS
        "entrypoint": ["sh", "-c", LOOP.replace("$", "$$")],
        "environment": {k: v.replace("$", "$$") for k, v in env.items()},
        "secrets": [{"source": "postgres_password", "target": "postgres_password"}, *offsite.secrets(cfg)],
        "volumes": [{"type": "bind", "source": t.backup_dir, "target": backup.MOUNT}],
        "networks": ["backend"],
        "stop_grace_period": "5s",
        "deploy": {"replicas": 1, "placement": {"constraints": ["node.role == manager"]},
                   "restart_policy": {"condition": "any", "delay": "10s"},
                   "resources": {"limits": {"memory": "256M"}}},
        "labels": {"djdeploy.role": "backup"},
        "healthcheck": {"disable": True},  # the image's pg_isready check is for a server; there is none here
    }
