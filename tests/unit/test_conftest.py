"""The engine gate itself: only tests marked engine/lab/cluster need (and under CI=true, require) the engine."""

import pytest

from tests.conftest import needs_engine


class FakeItem:
    def __init__(self, *markers):
        self.markers = {m: getattr(pytest.mark, m).mark for m in markers}

    def get_closest_marker(self, name):
        return self.markers.get(name)


@pytest.mark.parametrize("markers,expected", [
    ((), False), (("filterwarnings",), False), (("engine",), True), (("lab",), True), (("cluster",), True),
])
def test_only_marked_tests_need_the_engine(markers, expected):
    assert needs_engine(FakeItem(*markers)) is expected


def test_this_unit_test_does_not_need_the_engine(request):
    assert needs_engine(request.node) is False
