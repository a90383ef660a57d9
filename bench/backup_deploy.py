"""Deploy time with and without the pre-migrate backup, on the lab (one private stack, removed at the end).

Each round deploys an image with one more (safe, nullable AddField) migration, so a pre-migrate backup is
taken, then the same code again under a new tag (nothing pending: the backup step is skipped). The
executor's own step records give the deploy's total and the backup step's time.

    python bench/backup_deploy.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
_spec = importlib.util.spec_from_file_location("ship_conftest", ROOT / "tests" / "ship" / "conftest.py")
ship = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ship)

MIGRATION = '''from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("notes", "{prev}")]
    operations = [migrations.AddField("note", "bench{n}", models.TextField(null=True))]
'''


def migrations(n: int) -> dict:
    files, prev = {}, "0001_initial"
    for i in range(2, n + 2):
        name = f"{i:04d}_bench{i}"
        files[name + ".py"] = MIGRATION.format(prev=prev, n=i)
        prev = name
    return files


def deploy(e, name: str, base: str, files: dict):
    from deploy.ship import executor, registry

    tag = e.tag(name)
    dockerfile = "\n".join(f"COPY {f} /app/notes/migrations/{f}" for f in files)
    local = ship.build_derived(f"djapp:{base}", tag, dockerfile, files)
    registry.push(e.cfg(), local, tag, out=io.StringIO())
    started = time.monotonic()
    outcome = executor.deploy(e.cfg(), tag=tag, build=False, out=io.StringIO())
    total = time.monotonic() - started
    step = [r for r in outcome.records if r.step.what.startswith("back up the database")][0]
    return total, step.seconds, step.note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="deploys with and without a pending migration")
    args = parser.parse_args()
    import tempfile

    from deploy.ship import executor

    e = ship.Env(Path(tempfile.mkdtemp(prefix="djbench-deploy-")))
    try:
        base = e.tag("base")
        executor.deploy(e.cfg(), tag=base, build=True, out=io.StringIO())
        with_backup, without, steps = [], [], []
        for i in range(1, args.rounds + 1):
            total, seconds, note = deploy(e, f"m{i}", base, migrations(i))
            with_backup.append(total)
            steps.append(seconds)
            print(f"round {i}: with a pending migration {total:.1f}s (backup step {seconds:.2f}s: {note})")
            total, seconds, note = deploy(e, f"s{i}", base, migrations(i))
            without.append(total)
            print(f"round {i}: nothing pending {total:.1f}s (backup step {seconds:.2f}s: {note})")
        print(f"RESULT deploy_with_backup_median_s={statistics.median(with_backup):.1f} "
              f"deploy_without_median_s={statistics.median(without):.1f} "
              f"backup_step_median_s={statistics.median(steps):.2f} rounds={args.rounds}")
    finally:
        ship.remove_stack(e.stack)
        from deploy.lab import paths

        for tag in e.tags:
            for ref in (f"djapp:{tag}", f"{paths.REGISTRY}/djapp:{tag}"):
                ship.docker("rmi", ref, check=False)


if __name__ == "__main__":
    main()
