"""The pure helpers of bench/wagtail_build.py: the one-line edit and the reading of a classic-builder log."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import wagtail_build  # noqa: E402

LOG = [(0.0, "Step 1/3 : FROM debian:trixie-slim"), (0.1, " ---> 1234"), (0.2, "Step 2/3 : RUN apt-get update"),
       (0.3, " ---> Using cache"), (0.4, "Step 3/3 : COPY ./ /app/"), (2.4, " ---> abcd")]


def test_one_line_change_replaces_the_single_occurrence():
    assert wagtail_build.one_line_change('a = 1\nNAME = "x"\n', 'NAME = "x"', 'NAME = "x 7"') == 'a = 1\nNAME = "x 7"\n'


@pytest.mark.parametrize("text, message", [
    ("a\nb\n", "edit: expected 'X' exactly once, found it 0 times"),
    ("X\nX\n", "edit: expected 'X' exactly once, found it 2 times"),
])
def test_one_line_change_refuses_a_missing_or_repeated_line(text, message):
    with pytest.raises(SystemExit, match=f"^{message}$"):
        wagtail_build.one_line_change(text, "X", "Y")


def test_one_line_change_refuses_an_edit_that_adds_lines():
    with pytest.raises(SystemExit, match=r"^edit: 'X' -> 'Y\\nZ' must change exactly one line$"):
        wagtail_build.one_line_change("a\nX\n", "X", "Y\nZ")


def test_steps_time_each_step_and_see_cache_hits():
    got = [(round(s, 2), text, cached) for s, text, cached in wagtail_build.steps(LOG)]
    assert got == [(0.2, "Step 1/3 : FROM debian:trixie-slim", False), (0.2, "Step 2/3 : RUN apt-get update", True),
                   (2.0, "Step 3/3 : COPY ./ /app/", False)]


def test_rebuilt_lists_only_the_steps_that_ran_and_do_work():
    assert wagtail_build.rebuilt(LOG) == ["   2.0s  Step 3/3 : COPY ./ /app/"]
    assert wagtail_build.slowest(LOG, n=1) == ["   2.0s  Step 3/3 : COPY ./ /app/"]
