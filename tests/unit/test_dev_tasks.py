import inspect
import sys

import pytest
from invoke import Context

import tasks
from deploy.tasks import dev
from deploy.tasks.dev import REAL


def _all_tasks(coll, prefix=""):
    for name, t in coll.tasks.items():
        yield prefix + name, t
    for cname, sub in coll.collections.items():
        yield from _all_tasks(sub, prefix + cname + ".")


def test_plan_whole_suite_runs_fast_tests_first():
    plan = dev.test_plan(fast=False, real=False, keyword=None, extra=None)
    py = sys.executable
    assert plan == [
        [py, "-m", "pytest", "-m", f"not ({REAL})"],
        [py, "-m", "invoke", "lab.up", "--deploy"],
        [py, "-m", "pytest", "-m", REAL, "--durations=30"],
    ]


def test_plan_fast_and_extra_args():
    assert dev.test_plan(True, False, "settings", "-x -vv") == [
        [sys.executable, "-m", "pytest", "-k", "settings", "-x", "-vv", "-m", f"not ({REAL})"]
    ]


def test_fast_and_real_exclude_each_other():
    from invoke import Exit

    with pytest.raises(Exit, match="--fast and --real exclude each other"):
        tasks.ns["test"](Context(), fast=True, real=True)


@pytest.mark.parametrize("name,t", list(_all_tasks(tasks.ns)))
def test_every_task_has_a_one_line_docstring_and_help_for_every_flag(name, t):
    doc = inspect.getdoc(t.body) or ""
    first = doc.splitlines()[0] if doc else ""
    assert first and first.endswith("."), f"{name}: first docstring line must be one sentence"
    params = [p for p in inspect.signature(t.body).parameters if p != "c"]
    missing = [p for p in params if p not in t.help and p.replace("_", "-") not in t.help]
    assert not missing, f"{name}: no help= for {missing}"
