"""Fixed-window counters in the cache (newsletter.services.ratelimit)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import time_machine
from django.core.cache import cache

from newsletter.services.ratelimit import rate_limit_exceeded

START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # on an hour boundary: windows are aligned to it


def hit(key: str = "203.0.113.7", scope: str = "signup-ip", limit: int = 3) -> bool:
    return rate_limit_exceeded(scope=scope, key=key, limit=limit, window_seconds=3600)


def test_allows_limit_events_per_window_then_refuses() -> None:
    with time_machine.travel(START, tick=False):
        assert [hit() for _ in range(5)] == [False, False, False, True, True]


def test_keys_and_scopes_are_counted_separately() -> None:
    with time_machine.travel(START, tick=False):
        for _ in range(3):
            hit()
        assert hit() is True
        assert hit(key="198.51.100.1") is False
        assert hit(scope="link-ip") is False


def test_a_new_window_starts_from_zero() -> None:
    with time_machine.travel(START + timedelta(minutes=59), tick=False):
        for _ in range(4):
            hit()
        assert hit() is True
    with time_machine.travel(START + timedelta(hours=1), tick=False):
        assert hit() is False


def test_raw_keys_never_reach_the_cache() -> None:
    with time_machine.travel(START, tick=False):
        hit(key="ada@example.org", scope="address-emails")
    keys = list(cache._cache.keys())  # LocMemCache in tests
    assert len(keys) == 1
    assert "ada@example.org" not in keys[0]
    assert "address-emails" in keys[0]
