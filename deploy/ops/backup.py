"""Pure builders for backups: names, the one-off Postgres container's scripts, and reading their output.

A backup is ``<stamp>-<release>.dump`` (pg_dump custom format, ``-Fc``) plus ``<name>.meta`` (key=value
lines: created, release, reason, size, sha256, migrations). The dump script writes both under
temporary names (``.<name>.partial``), checks the archive with ``pg_restore --list``, syncs, and renames
the dump and then the sidecar: a backup is complete exactly when its ``.meta`` exists, so a full disk or
a killed run never leaves something that looks like a backup (the trap removes the partial files).
The database password always travels on stdin, never in argv or the environment of ``docker run``.
"""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass

from deploy.core.errors import ToolkitError

MOUNT = "/backups"
NAME_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[A-Za-z0-9._-]+\.dump$")
_RELEASE_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_READ_PASSWORD = 'IFS= read -r PGPASSWORD; export PGPASSWORD; '
MIGRATIONS_SQL = ("select coalesce(string_agg(app || '.' || name, ',' order by app, name), '') "
                  "from django_migrations")

DUMP_SCRIPT = (
    'set -eu; ' + _READ_PASSWORD + 'umask 077; '
    'd=' + MOUNT + '; n="$1"; tmp="$d/.$n.partial"; mtmp="$d/.$n.meta.partial"; '
    'trap \'rm -f "$tmp" "$mtmp"\' EXIT; '
    'pg_dump --format=custom --file="$tmp"; '
    'pg_restore --list "$tmp" > /dev/null; '
    # A database without Django's table yet (nothing migrated) has an empty schema list.
    'migs="$(psql -X -A -t -q -v ON_ERROR_STOP=1 -c "$MIGRATIONS_SQL" 2>/dev/null)" || migs=""; '
    'size="$(stat -c %s "$tmp")"; sum="$(sha256sum "$tmp" | cut -d " " -f 1)"; '
    'printf "name=%s\\ncreated=%s\\nrelease=%s\\nreason=%s\\nsize=%s\\nsha256=%s\\nmigrations=%s\\n" '
    '"$n" "$2" "$3" "$4" "$size" "$sum" "$migs" > "$mtmp"; '
    'sync "$tmp" "$mtmp"; mv "$tmp" "$d/$n"; mv "$mtmp" "$d/$n.meta"; sync "$d"; trap - EXIT; '
    'echo "backup $n $size $sum"'
)
# One transaction: a failing restore (bad archive, lost connection) leaves the database as it was.
RESTORE_SCRIPT = (
    'set -eu; ' + _READ_PASSWORD +
    'pg_restore --clean --if-exists --no-owner --single-transaction --exit-on-error '
    '--dbname="$PGDATABASE" "' + MOUNT + '/$1"'
)
SCHEMA_SCRIPT = 'set -eu; ' + _READ_PASSWORD + 'psql -X -A -t -q -v ON_ERROR_STOP=1 -c "$MIGRATIONS_SQL"'
# Print each complete backup's sidecar, blocks separated by a blank line (no backups dir yet: nothing).
LIST_SCRIPT = ('cd "$1" 2>/dev/null || exit 0; for f in *.dump.meta; do [ -f "$f" ] || continue; '
               'cat "$f"; echo; done')
VERIFY_SCRIPT = ('cd "$1" || exit 3; [ -f "$2.meta" ] || { echo "missing: $2.meta" >&2; exit 4; }; '
                 '[ -f "$2" ] || { echo "missing: $2" >&2; exit 4; }; cat "$2.meta"; '
                 'echo "actual_size=$(stat -c %s "$2")"; echo "actual_sha256=$(sha256sum "$2" | cut -d " " -f 1)"')


@dataclass(frozen=True)
class Meta:
    name: str
    created: str
    release: str
    reason: str
    size: int
    sha256: str
    migrations: tuple

    def age(self, now: float | None = None) -> str:
        return human_age(self.created, now)


def stamp(when: float | None = None) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if when is None else when))


def iso(when: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if when is None else when))


def safe_release(release: str) -> str:
    """A release tag fit for a file name ('' -> 'none')."""
    return _RELEASE_SAFE.sub("_", release).strip("._-") or "none"


def backup_name(release: str, when: float | None = None) -> str:
    return f"{stamp(when)}-{safe_release(release)}.dump"


def check_name(name: str) -> str:
    """A backup name as `inv db.backups` prints it; anything else (a path, a typo) is refused."""
    if not NAME_RE.match(name or ""):
        raise ToolkitError(f"{name!r} is not a backup name (like 20261201T091700Z-abc1234.dump); "
                           f"list them with `inv db.backups`")
    return name


def _oneoff(t, script: str, args: list, *, role: str, mount: bool = True) -> list:
    # on an environment the client config the deploy logged in with: the Postgres image may live in a private registry
    config = ["--config", t.docker_config] if t.docker_config else []
    argv = ["docker", *config, "run", "--rm", "-i", "--network", t.network, "--label", f"djdeploy.stack={t.label}",
            "--label", f"djdeploy.role={role}"]
    if t.user:
        argv += ["--user", t.user]
    if mount:
        argv += ["--volume", f"{t.backup_dir}:{MOUNT}"]
    argv += ["--env", f"PGHOST={t.db_host}", "--env", f"PGPORT={t.db_port}", "--env", f"PGUSER={t.db_user}", "--env", f"PGDATABASE={t.db_name}",
             "--env", f"MIGRATIONS_SQL={MIGRATIONS_SQL}", "--entrypoint", "sh", t.postgres_image, "-c", script, role]
    return argv + list(args)


def mkdir_cmd(t) -> list:
    return ["mkdir", "-p", "-m", "0700", t.backup_dir]


def dump_cmd(t, name: str, created: str, release: str, reason: str) -> list:
    """pg_dump -Fc in a one-off container of the Postgres image on the stack's network (password on stdin)."""
    return _oneoff(t, DUMP_SCRIPT, [name, created, release, reason], role="backup")


def restore_cmd(t, name: str) -> list:
    return _oneoff(t, RESTORE_SCRIPT, [name], role="restore")


def schema_cmd(t) -> list:
    """The database's applied migrations, comma-separated (fails if Django never migrated it)."""
    return _oneoff(t, SCHEMA_SCRIPT, [], role="schema", mount=False)


def list_cmd(t) -> list:
    return ["sh", "-c", LIST_SCRIPT, "list", t.backup_dir]


def verify_cmd(t, name: str) -> list:
    return ["sh", "-c", VERIFY_SCRIPT, "verify", t.backup_dir, name]


def remove_cmd(t, names: list) -> list:
    paths = [f"{t.backup_dir}/{n}{suffix}" for n in names for suffix in (".meta", "")]
    return ["rm", "-f", *paths]


# ---- reading output -------------------------------------------------------------------------------

def parse_fields(text: str) -> dict:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def meta_from(fields: dict) -> Meta:
    try:
        size = int(fields.get("size", ""))
    except ValueError:
        size = -1
    migrations = tuple(m for m in fields.get("migrations", "").split(",") if m)
    return Meta(fields.get("name", ""), fields.get("created", ""), fields.get("release", ""),
                fields.get("reason", ""), size, fields.get("sha256", ""), migrations)


def parse_list(text: str) -> list:
    """The LIST_SCRIPT output: one Meta per block, oldest first (names start with the UTC stamp)."""
    blocks = [b for b in text.replace("\r\n", "\n").split("\n\n") if b.strip()]
    return sorted((meta_from(parse_fields(b)) for b in blocks), key=lambda m: m.name)


def verified(name: str, text: str, where: str) -> Meta:
    """The VERIFY_SCRIPT output -> Meta, or a one-line error when the file does not match its sidecar."""
    fields = parse_fields(text)
    meta = meta_from(fields)
    actual_size, actual_sum = fields.get("actual_size", ""), fields.get("actual_sha256", "")
    if str(meta.size) != actual_size:
        raise ToolkitError(f"backup {name} in {where} is truncated or corrupt ({actual_size} bytes, its sidecar "
                           f"says {meta.size}); nothing was changed; pick another backup from `inv db.backups`")
    if meta.sha256 != actual_sum:
        raise ToolkitError(f"backup {name} in {where} is corrupt (sha256 {actual_sum[:12]}..., its sidecar says "
                           f"{meta.sha256[:12]}...); nothing was changed; pick another backup from `inv db.backups`")
    return meta


def newer_schema(live: str, meta: Meta) -> list:
    """Migrations the database has and the backup lacks: restoring would go under the running code's schema."""
    applied = [m for m in live.strip().split(",") if m]
    return sorted(set(applied) - set(meta.migrations))


def human_size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def human_age(created: str, now: float | None = None) -> str:
    try:
        then = calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return "?"
    seconds = max(0, int((time.time() if now is None else now) - then))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def table(metas: list, now: float | None = None, offsite: set | None = None) -> str:
    """One row per backup; ``offsite`` (the names with a complete copy in the bucket) adds an OFFSITE column."""
    if not metas:
        return ""
    extra = ("OFFSITE",) if offsite is not None else ()
    rows = [("BACKUP", "SIZE", "AGE", "SHA256", "RELEASE", "REASON") + extra]
    rows += [(m.name, human_size(m.size), m.age(now), m.sha256[:12], m.release, m.reason)
             + (("yes" if m.name in offsite else "no",) if extra else ()) for m in metas]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows) + "\n"
