"""Which migrations a deploy will apply, and which of them break the running release during the rollout.

During a rolling update the previous release keeps serving against the migrated schema, so a migration must
not remove or rename what that release uses, nor add a constraint its writes do not satisfy. The check is
Django's own migration graph, run inside the NEW image (its migrations, its Django) by ``python -`` with the
script on stdin, before the migration gate: for every operation of every pending migration it compares the
project state before that migration (``loader.project_state(node, at_end=False)``) with the operation.
Flagged: RemoveField, DeleteModel, RenameField, RenameModel, AlterModelTable, an AddField that is NOT NULL
without a database default (``db_default``: Django drops a plain ``default`` after adding the column, so the
old release's INSERTs fail), and an AlterField that makes a column NOT NULL. RunSQL/RunPython are data
changes and are not judged. (Why not django-migration-linter: see README "Operating production".)
"""

from __future__ import annotations

import json

from deploy.core.errors import ToolkitError

MARKER = "DJDEPLOY-MIGRATIONS "
SCRIPT = r'''
import json
import django
django.setup()
from django.db import connection
from django.db.migrations import operations as ops
from django.db.migrations.executor import MigrationExecutor
from django.db.models import NOT_PROVIDED

def reasons(op, before, app):
    def old_field(model, name):
        try:
            return before.models[app, model.lower()].get_field(name)
        except (KeyError, LookupError):
            return None
    if isinstance(op, ops.RemoveField):
        yield f"drops column {op.model_name}.{op.name}"
    elif isinstance(op, ops.DeleteModel):
        yield f"drops table of model {op.name}"
    elif isinstance(op, ops.RenameField):
        yield f"renames column {op.model_name}.{op.old_name} to {op.new_name}"
    elif isinstance(op, ops.RenameModel):
        yield f"renames model {op.old_name} to {op.new_name} (its table)"
    elif isinstance(op, ops.AlterModelTable):
        yield f"renames the table of model {op.name}"
    elif isinstance(op, ops.AddField):
        f = op.field
        if not f.null and not f.many_to_many and getattr(f, "db_default", NOT_PROVIDED) is NOT_PROVIDED:
            yield f"adds NOT NULL column {op.model_name}.{op.name} without a database default (db_default)"
    elif isinstance(op, ops.AlterField):
        old = old_field(op.model_name, op.name)
        if old is not None and old.null and not op.field.null:
            yield f"makes column {op.model_name}.{op.name} NOT NULL"

executor = MigrationExecutor(connection)
plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
pending, unsafe = [], []
for migration, backwards in plan:
    node = (migration.app_label, migration.name)
    pending.append(".".join(node))
    before = executor.loader.project_state(node, at_end=False)
    for op in migration.operations:
        for why in reasons(op, before, migration.app_label):
            unsafe.append([".".join(node), why])
print("DJDEPLOY-MIGRATIONS " + json.dumps({"pending": pending, "unsafe": unsafe}))
'''


def check_cmd(cfg, image: str) -> list:
    """A one-off container of the new image with the migration's environment; the script comes on stdin."""
    from deploy.ship import stackfile, swarm

    p = swarm.paths(cfg)
    return ["docker", "--config", p.docker_config, "run", "--rm", "-i", "--network", stackfile.network(cfg),
            "--env-file", p.migrate_env, "--label", f"djdeploy.stack={cfg.stack_name}",
            "--label", "djdeploy.role=migration-check", image, "python", "-"]


def parse(output: str) -> tuple[list, list]:
    """(pending migrations, [(migration, reason)]) from the script's marker line."""
    for line in reversed(output.splitlines()):
        if line.startswith(MARKER):
            data = json.loads(line[len(MARKER):])
            return list(data["pending"]), [tuple(u) for u in data["unsafe"]]
    raise ToolkitError("the migration check printed no result; run `inv manage --env ENV -- migrate --plan` "
                       "to see why")


def refusal(unsafe: list, env: str) -> str:
    name, why = unsafe[0]
    more = f" (and {len(unsafe) - 1} more unsafe operation(s))" if len(unsafe) > 1 else ""
    return (f"refusing to migrate {env}: migration {name} {why}{more}; the running release still uses it during "
            f"the rolling update. Nothing was migrated or rolled out. Split it over two deploys (first stop using "
            f"it, then change the schema), or pass --allow-unsafe-migrations (a backup is taken first)")
