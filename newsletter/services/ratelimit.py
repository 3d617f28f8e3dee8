"""Fixed-window counters in the Django cache (Redis in production, shared by all web processes)."""

from __future__ import annotations

import hashlib
import time

from django.core.cache import cache


def rate_limit_exceeded(*, scope: str, key: str, limit: int, window_seconds: int) -> bool:
    """Count one event for (scope, key); True once more than `limit` happened in this window.

    Keys are hashed so that raw addresses never sit in the cache.
    """
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    window = int(time.time() // window_seconds)
    cache_key = f"rl:{scope}:{digest}:{window}"
    # add() is atomic: only the first event of a window creates the counter.
    if cache.add(cache_key, 1, timeout=window_seconds + 60):
        count = 1
    else:
        try:
            count = cache.incr(cache_key)
        except ValueError:  # expired between add() and incr()
            cache.add(cache_key, 1, timeout=window_seconds + 60)
            count = 1
    return count > limit
