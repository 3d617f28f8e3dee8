"""Rate limits as sliding-window counters in the Django cache (Redis in production, shared by all web
processes and workers).

A fixed window lets a burst straddle its edge (twice the limit in a minute around midnight for a
daily limit) and forgets everything at once. The sliding window counts this window's events plus the
previous window's, weighted by how much of it still overlaps the last `window_seconds`: two counters
per key, one atomic increment per event (Cloudflare's sliding-window counter).
"""

from __future__ import annotations

import hashlib
import time

from django.core.cache import cache


def rate_limit_exceeded(*, scope: str, key: str, limit: int, window_seconds: int) -> bool:
    """Count one event for (scope, key); True once more than `limit` happened in the last
    `window_seconds` (sliding). Keys are hashed so that raw addresses never sit in the cache."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    now = time.time()
    window = int(now // window_seconds)
    current_key = f"rl:{scope}:{digest}:{window}"
    # Kept for two windows: it is the "previous" counter of the next one.
    timeout = 2 * window_seconds + 60
    # add() is atomic: only the first event of a window creates the counter.
    if cache.add(current_key, 1, timeout=timeout):
        count = 1
    else:
        try:
            count = cache.incr(current_key)
        except ValueError:  # expired between add() and incr()
            cache.add(current_key, 1, timeout=timeout)
            count = 1
    previous = cache.get(f"rl:{scope}:{digest}:{window - 1}", 0)
    overlap = 1.0 - (now % window_seconds) / window_seconds
    if count + previous * overlap <= limit:
        return False
    # A refused event is not counted: the limit is a rate of what was let through, so a flood
    # does not keep the window shut after it stops.
    cache.decr(current_key)
    return True
