"""A token bucket per caller: per principal for authenticated callers, per client address (with
a limit of its own) for anonymous ones.

In memory, per node: with N nodes behind a balancer a caller may get up to N times the rate,
which is acceptable for protecting the service (it is not a billing meter).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable

import attrs
from aiohttp import web

from helix.config import Settings

MAX_BUCKETS = 50_000


@attrs.frozen(kw_only=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset_at: int  # unix time when the bucket is full again
    retry_after: int  # seconds until the next request is allowed (0 if allowed now)

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }


@attrs.define
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    def __init__(
        self,
        per_minute: int,
        burst: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.enabled = per_minute > 0
        self.capacity = max(1, burst or per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self._clock = clock
        self._wall = wall
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> Verdict:
        """Charge one request to `key`'s bucket."""
        return self._verdict(key, cost=1.0)

    def peek(self, key: str) -> Verdict:
        """`key`'s bucket as it stands, charging nothing (for requests that are exempt)."""
        return self._verdict(key, cost=0.0)

    def _verdict(self, key: str, *, cost: float) -> Verdict:
        now = self._clock()
        if not self.enabled:
            return Verdict(
                allowed=True, limit=0, remaining=0, reset_at=int(self._wall()), retry_after=0
            )
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._forget_full(now)
            bucket = self._buckets[key] = _Bucket(float(self.capacity), now)
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        allowed = bucket.tokens >= cost
        if allowed:
            bucket.tokens -= cost
        to_full = (self.capacity - bucket.tokens) / self.rate
        retry = 0 if allowed else math.ceil((1.0 - bucket.tokens) / self.rate)
        return Verdict(
            allowed=allowed,
            limit=self.capacity,
            remaining=int(bucket.tokens),
            reset_at=math.ceil(self._wall() + to_full),
            retry_after=retry,
        )

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled: forgetting them changes nothing."""
        for key, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.updated) * self.rate >= self.capacity:
                del self._buckets[key]
        if len(self._buckets) >= MAX_BUCKETS:
            self._buckets.clear()


@attrs.frozen
class RateLimits:
    """The two limits: authenticated callers by principal, anonymous ones by client address."""

    authenticated: TokenBuckets
    anonymous: TokenBuckets

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        return cls(
            TokenBuckets(settings.rate_limit_per_minute, settings.rate_limit_burst),
            TokenBuckets(
                settings.rate_limit_anonymous_per_minute, settings.rate_limit_anonymous_burst
            ),
        )

    def bucket(self, user_id: uuid.UUID | None, address: str) -> tuple[TokenBuckets, str]:
        """The limit and bucket key that a caller is charged to."""
        if user_id is not None:
            return self.authenticated, f"user:{user_id}"
        return self.anonymous, f"ip:{address}"


LIMITER = web.AppKey("rate_limiter", RateLimits)
VERDICT = web.RequestKey("rate_limit_verdict", Verdict)
