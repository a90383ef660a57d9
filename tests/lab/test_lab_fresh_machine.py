"""Opt-in (about 6 minutes of heavy CPU): a real cold `inv lab.up` on a fresh Debian 12 machine (a nested
container: no engine, no packages), then `inv lab.down --yes` there leaves no lab process, directory or link.
Run with DJDEPLOY_LAB_FRESH=1; the same code is `python bench/lab_fresh_machine.py`."""

from __future__ import annotations

import os
import sys

import pytest

from labhelpers import ROOT

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(os.environ.get("DJDEPLOY_LAB_FRESH") != "1",
                                 reason="slow (about 6 min): set DJDEPLOY_LAB_FRESH=1 to run it")]


def test_cold_lab_up_on_a_fresh_machine_then_down_leaves_nothing():
    sys.path.insert(0, str(ROOT / "bench"))
    import lab_fresh_machine

    report = lab_fresh_machine.run()
    print(f"cold lab.up on a fresh machine: {report['cold_lab_up_s']}s; second run {report['second_lab_up_s']}s")
    assert report["status"] and all(line.startswith("up ") for line in report["status"]), report["status"]
    assert any("(started by the lab)" in line for line in report["status"])
    assert any("(initialized by the lab)" in line for line in report["status"])
    assert report["down_leaves_nothing"], report["down_check"]
