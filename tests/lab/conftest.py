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
