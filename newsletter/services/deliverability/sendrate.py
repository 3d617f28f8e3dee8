"""One send rate for every worker process and machine, lowered when the relay pushes back.

Part of step 4 (send, delivery.py). `NEWSLETTER_SEND_RATE` ("14/s", "50000/h") is a token bucket in
Redis, shared by all workers: one atomic Lua script refills it at the current rate and hands out up to
a batch of permits per call, so the limiter costs one round trip per batch, not per email. Optional
`NEWSLETTER_DOMAIN_RATES` add a bucket per recipient domain.

Back-off (AIMD): a 421, a 4xx "slow down" or an ESP's throttling error *cuts* the shared rate in half
(multiplicative decrease, at most once a second however many workers see the error); from there it
climbs back to the configured rate linearly over NEWSLETTER_RATE_RECOVERY_SECONDS (additive increase).
The cut lives in Redis next to the buckets, so every worker slows down together.

Bound: in any one-second window at most rate + burst + (processes x batch) emails start, where the
burst (the bucket's size) is one batch: a batch a process took just before the window may be spent
inside it. With an empty NEWSLETTER_SEND_RATE nothing here runs (`pacer_for_chunk` returns None).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger("newsletter.sendrate")

KEY_PREFIX = "newsletter:sendrate:"
AIMD_KEY = KEY_PREFIX + "aimd"
CUT_COOLDOWN = 1.0  # seconds: one cut per burst of pushback, not one per worker that saw it
BATCH_MAX = 20
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}

# KEYS[1] bucket (hash: tokens, ts), KEYS[2] the shared AIMD state (hash: factor, at).
# ARGV: configured rate (permits/s), burst, permits wanted, recovery seconds, "take" | "cut" | "peek".
# Returns {permits granted, seconds to wait when none, current rate, 1 if this take found the rate back
# at the configured one after a cut (the AIMD state is then deleted: exactly one caller of the fleet
# sees it, whichever process takes the next permit)}; floats travel as strings.
_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local wanted, recovery = tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[2], 'factor', 'at', 'recovery')
local factor = tonumber(state[1]) or 1
local at = tonumber(state[2])
recovery = tonumber(state[3]) or recovery  -- the cutter's setting: every reader sees one curve
if at then factor = math.min(1, factor + (now - at) / recovery) end
if ARGV[5] == 'cut' then
  if at and now - at < CUT_COOLDOWN then return {0, '0', tostring(rate * factor), 0} end
  factor = math.max(factor / 2, math.min(1, 1 / rate))
  redis.call('HSET', KEYS[2], 'factor', tostring(factor), 'at', tostring(now), 'recovery', ARGV[4])
  redis.call('EXPIRE', KEYS[2], math.ceil(recovery) + 60)
  return {1, '0', tostring(rate * factor), 0}
end
local current = rate * factor
if ARGV[5] == 'peek' then return {0, '0', tostring(current), 0} end
local recovered = 0
if at and factor >= 1 then
  redis.call('DEL', KEYS[2])
  recovered = 1
end
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(bucket[1]) or burst
local ts = tonumber(bucket[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * current)
local granted = math.min(wanted, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / current) + 60)
local wait = 0
if granted == 0 then wait = (1 - tokens) / current end
return {granted, tostring(wait), tostring(current), recovered}
""".replace("CUT_COOLDOWN", str(CUT_COOLDOWN))


@dataclass(frozen=True)
class Rate:
    per_second: float
    text: str

    @property
    def batch(self) -> int:
        """Permits taken per round trip: about a tenth of a second's worth, 1 to BATCH_MAX."""
        return max(1, min(BATCH_MAX, int(self.per_second / 10)))


def rate_parse(text: str) -> Rate | None:
    """ "14/s", "50000/h", "5/min" -> Rate; "" -> None (unlimited). Raises ImproperlyConfigured."""
    text = text.strip()
    if not text:
        return None
    count, _, unit = text.partition("/")
    try:
        per_second = float(count) / _UNITS[unit.strip().lower()]
    except (KeyError, ValueError):
        raise ImproperlyConfigured(f"not a send rate: {text!r} (write it like 14/s or 50000/h)") from None
    if not (per_second > 0 and math.isfinite(per_second)):
        raise ImproperlyConfigured(f"a send rate must be positive: {text!r}")
    return Rate(per_second, text)


def domain_rates_parse(text: str) -> dict[str, Rate]:
    """ "gmail.com=5/s, yahoo.com=2/s" -> {"gmail.com": Rate, ...}. Raises ImproperlyConfigured."""
    rates = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        domain, equals, rate = part.partition("=")
        parsed = rate_parse(rate) if equals and domain.strip() else None
        if parsed is None:
            raise ImproperlyConfigured(f"not a domain rate: {part!r} (write it like gmail.com=5/s)")
        rates[domain.strip().lower()] = parsed
    return rates


@lru_cache(maxsize=1)
def _script(url: str):
    # redis-py's pool notices a fork and reconnects, so the prefork children can share this. The
    # script runs by its SHA (EVALSHA), loaded on first use.
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    return client.register_script(_SCRIPT)


def _run(bucket: str, rate: Rate, *, wanted: int, mode: str) -> tuple[int, float, float, bool]:
    script = _script(settings.NEWSLETTER_LIMITER_REDIS_URL)
    recovery = max(settings.NEWSLETTER_RATE_RECOVERY_SECONDS, 1)
    granted, wait, current, recovered = script(
        keys=[KEY_PREFIX + bucket, AIMD_KEY], args=[rate.per_second, rate.batch, wanted, recovery, mode]
    )
    return int(granted), float(wait), float(current), bool(recovered)


@dataclass(frozen=True)
class RateStatus:
    configured: str
    current_per_second: float
    lowered: bool


def send_rate_status() -> RateStatus | None:
    """The configured and the current shared rate (stats page); None when unlimited or unknown."""
    rate = rate_parse(settings.NEWSLETTER_SEND_RATE)
    if rate is None:
        return None
    try:
        _, _, current, _ = _run("global", rate, wanted=0, mode="peek")
    except redis.RedisError:
        return None
    return RateStatus(rate.text, current, current < rate.per_second * 0.999)


@dataclass
class SendPacer:
    """The permits of one chunk: `wait` before each email, `slow_down` when the relay pushes back."""

    rate: Rate
    domains: dict[str, Rate]
    held: dict[str, int] = field(default_factory=dict)
    sleep: Callable[[float], None] = time.sleep

    def wait(self, *, recipient: str, renew: Callable[[], None]) -> float | None:
        """Hold a permit for this recipient (global, and its domain's if it has one). Sleeps for
        permits in steps of at most a quarter lease, calling `renew` (the claim's lease) before each;
        returns None when the email may go, or the seconds after which to retry the rest of the
        chunk when the next permit is further away than NEWSLETTER_PERMIT_MAX_WAIT_SECONDS."""
        domain = recipient.rpartition("@")[2].lower()
        buckets = [("global", self.rate)]
        if domain in self.domains:
            buckets.append((f"domain:{domain}", self.domains[domain]))
        for bucket, rate in buckets:
            if (retry_in := self._permit(bucket, rate, renew)) is not None:
                return retry_in
        for bucket, _ in buckets:
            self.held[bucket] -= 1
        return None

    def _permit(self, bucket: str, rate: Rate, renew: Callable[[], None]) -> float | None:
        while self.held.get(bucket, 0) < 1:
            try:
                granted, wait, _, recovered = _run(bucket, rate, wanted=rate.batch, mode="take")
            except redis.RedisError as exc:
                # Sending unmetered could break the ESP's quota: wait for Redis instead.
                logger.error("send rate limiter unavailable, chunk put off: %s", exc)
                return settings.NEWSLETTER_PERMIT_MAX_WAIT_SECONDS
            if recovered:
                # Logged by one process of the fleet: the first to take a permit after the way back up.
                logger.info("send rate recovered to the configured %s", rate.text)
            self.held[bucket] = self.held.get(bucket, 0) + granted
            if granted:
                break
            if wait > settings.NEWSLETTER_PERMIT_MAX_WAIT_SECONDS:
                return wait
            renew()
            self.sleep(min(wait, _quarter_lease()))
        return None

    def slow_down(self, *, reason: str) -> bool:
        """Cut the shared rate (AIMD); False when another worker cut it within the last second."""
        try:
            cut, _, current, _ = _run("global", self.rate, wanted=0, mode="cut")
        except redis.RedisError as exc:
            logger.error("send rate not lowered, limiter unavailable: %s", exc)
            return False
        if cut:
            logger.warning(
                "send rate lowered to %.2f/s (configured %s) after: %s", current, self.rate.text, reason
            )
        return bool(cut)


def _quarter_lease() -> float:
    return settings.NEWSLETTER_CLAIM_LEASE.total_seconds() / 4


def pacer_for_chunk() -> SendPacer | None:
    """A pacer for one chunk, or None when NEWSLETTER_SEND_RATE is empty (no limiter, no Redis)."""
    rate = rate_parse(settings.NEWSLETTER_SEND_RATE)
    if rate is None:
        return None
    return SendPacer(rate=rate, domains=domain_rates_parse(settings.NEWSLETTER_DOMAIN_RATES))
