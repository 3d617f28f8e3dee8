"""Admin log-in throttled per username, with a growing delay rather than a lock.

django-axes locks out a client (an IPv4 address or an IPv6 /64, newsletter.client_address) after a
few wrong passwords. A stranger with many networks gets those few tries on each, so the username is
throttled too: after NEWSLETTER_LOGIN_FREE_FAILURES failures, each further attempt must wait
1, 2, 4, ... seconds after the last failure, up to NEWSLETTER_LOGIN_MAX_DELAY_SECONDS. An attempt
made too early is refused unchecked and does not count, so the wait never grows past the maximum and
the right password always gets through once it has passed: a delay, never a lock.

Networks the username has logged in from recently wait for nothing: a stranger elsewhere cannot keep
the operator out of their usual network. Usernames that do not exist are throttled alike, so the
answer names no account. Counts live in the cache (Redis in production), keys hashed.
"""

from __future__ import annotations

import hashlib
import math
import time

from django.conf import settings
from django.core.cache import cache

FAILURES_KEPT_SECONDS = 24 * 3600  # the count starts over a day after the last failure
KNOWN_NETWORK_SECONDS = 90 * 24 * 3600


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def _failures_key(username: str) -> str:
    return f"login:failures:{_digest(username)}"


def _known_key(username: str, client: str) -> str:
    return f"login:known:{_digest(username)}:{_digest(client)}"


def login_delay_after(failures: int) -> int:
    """Seconds an attempt must wait after the last of `failures` failures."""
    free = settings.NEWSLETTER_LOGIN_FREE_FAILURES
    if failures < free:
        return 0
    # min() before the power: 2 ** 10_000 is a big number to build for nothing.
    return min(2 ** min(failures - free, 30), settings.NEWSLETTER_LOGIN_MAX_DELAY_SECONDS)


def login_wait_seconds(*, username: str, client: str) -> int:
    """How long this client must still wait before trying `username`'s password; 0 = go ahead."""
    if cache.get(_known_key(username, client)):
        return 0
    state = cache.get(_failures_key(username))
    if not state:
        return 0
    failures, last = state
    return max(0, math.ceil(last + login_delay_after(failures) - time.time()))


def login_failure_record(*, username: str) -> None:
    key = _failures_key(username)
    # Read-modify-write: two failures at the same instant may count as one, which only shortens
    # one delay by a step; a lock here would cost every attempt a round trip more.
    failures, _ = cache.get(key) or (0, 0.0)
    cache.set(key, (failures + 1, time.time()), timeout=FAILURES_KEPT_SECONDS)


def login_success_record(*, username: str, client: str) -> None:
    cache.set(_known_key(username, client), 1, timeout=KNOWN_NETWORK_SECONDS)
