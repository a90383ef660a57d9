"""Fixtures for the lab's real tests."""

from __future__ import annotations

import pytest

from labhelpers import free_port


@pytest.fixture
def isolated_lab_env(tmp_path):
    """Environment for a second, isolated lab: its own directory and free ports, the shared engine."""
    return {"DJDEPLOY_LAB_DIR": str(tmp_path / "lab"),
            "DJDEPLOY_LAB_REGISTRY_PORT": str(free_port()),
            "DJDEPLOY_LAB_SSH_PORT": str(free_port())}


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so fixtures can print container logs when a test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
