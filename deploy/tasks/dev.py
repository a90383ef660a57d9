"""Tasks: the test suite, in the order CI runs it (fast tests first, then the lab, then real-engine tests)."""

from __future__ import annotations

import sys

from deploy.core.errors import ToolkitError
from deploy.tasks._base import task

REAL = "engine or lab or cluster"


def test_plan(fast: bool, real: bool, keyword: str | None, extra: str | None) -> list[list[str]]:
    """Pure: the commands `inv test` runs, in order."""
    base = [sys.executable, "-m", "pytest"]
    if keyword:
        base += ["-k", keyword]
    if extra:
        import shlex

        base += shlex.split(extra)
    plan = []
    if not real:
        plan.append(base + ["-m", f"not ({REAL})"])
    if not fast:
        plan.append([sys.executable, "-m", "invoke", "lab.up", "--deploy"])
        plan.append(base + ["-m", REAL, "--durations=30"])  # the slowest real-engine tests, for the CI budget
    return plan


@task(help={
    "fast": "run only the fast unit tests (no engine, seconds)",
    "real": "skip the unit tests; provision the lab and run only the real-engine tests",
    "k": "only tests matching this pytest -k expression",
    "pytest_args": "extra pytest arguments, quoted as one string, e.g. \"-x -vv\"",
})
def test(c, fast=False, real=False, k=None, pytest_args=None):
    """Run the whole test suite: unit tests, then lab.up, then real-engine tests."""
    if fast and real:
        raise ToolkitError("--fast and --real exclude each other; pass one of them, or neither for the whole suite")
    from deploy.core.runner import Runner

    runner = Runner(ctx=c)
    for argv in test_plan(fast, real, k, pytest_args):
        runner.run(argv, pty=False)
