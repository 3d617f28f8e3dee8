"""The suite's own order (tests/conftest.py): what keeps the tests independent of each other."""

from __future__ import annotations

import pytest

from tests.conftest import pytest_collection_modifyitems


def test_the_test_order_keeps_transactional_tests_after_the_others_and_slow_ones_first_among_them() -> None:
    # A transactional test flushes the tables (the topics of the data migrations too) when it ends:
    # a quick database test after it, in one process or one xdist worker, would find no topics.
    class Item:
        def __init__(self, name: str, *markers: pytest.Mark) -> None:
            self.name, self.markers, self.fixturenames = name, {m.name: m for m in markers}, []

        def get_closest_marker(self, name: str) -> pytest.Mark | None:
            return self.markers.get(name)

    transactional = pytest.mark.django_db(transaction=True).mark
    items = [
        Item("browser", pytest.mark.browser.mark, transactional),
        Item("quick db", pytest.mark.django_db.mark),
        Item("slow, not transactional", pytest.mark.integration.mark, pytest.mark.django_db.mark),
        Item("quick transactional", transactional),
        Item("no db"),
    ]
    pytest_collection_modifyitems(items)  # type: ignore[arg-type]
    assert [item.name for item in items] == [
        "slow, not transactional",
        "quick db",
        "no db",
        "browser",
        "quick transactional",
    ]
