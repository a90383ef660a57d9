"""Shared test plumbing: engine-marked tests skip locally but FAIL under CI=true when no engine answers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_engine_state = {}


def _engine_problem():
    if "problem" not in _engine_state:
        from deploy.core.engine import client
        from deploy.core.errors import EngineUnavailable

        try:
            client(timeout=10).close()
            _engine_state["problem"] = None
        except EngineUnavailable as exc:
            _engine_state["problem"] = str(exc)
    return _engine_state["problem"]


ENGINE_MARKERS = ("engine", "lab", "cluster")


def needs_engine(item) -> bool:
    """True when the test carries one of the markers that need a Docker engine."""
    return any(item.get_closest_marker(name) is not None for name in ENGINE_MARKERS)


def pytest_runtest_setup(item):
    if needs_engine(item):
        problem = _engine_problem()
        if problem:
            if IN_CI:
                pytest.fail(f"CI=true and this test needs the Docker engine: {problem}", pytrace=False)
            pytest.skip(f"needs the Docker engine: {problem}")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item (item.rep_setup, rep_call, rep_teardown), so that fixtures can
    print container logs in their teardown when the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


# The installed toolkit and the Wagtail site: session fixtures of tests/own that the uploads cluster test uses too
from tests.own.fixtures import toolkit_venv, wagtail_built, wagtail_site  # noqa: E402,F401


@pytest.fixture(scope="session")
def docker_client():
    from deploy.core.engine import client

    cli = client()
    yield cli
    cli.close()
