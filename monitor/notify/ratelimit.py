"""Token buckets: how a channel keeps under a destination's rate limit.

A bucket holds at most `burst` tokens (by default `rate`, at least one) and refills at
`rate / per` tokens a second. It is guarded by a thread lock rather than an asyncio lock, so one
bucket can be shared by channels living on different event loops or threads (Slack's limit is
per webhook URL, whoever sends).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from monitor.notify.channel_config import parse_rate


class TokenBucket:
    """`rate` tokens every `per` seconds, with bursts of up to `burst` tokens."""

    def __init__(
        self,
        rate: float,
        per: float = 1.0,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or per <= 0:
            raise ValueError("rate and per must be positive")
        self.rate = rate
        self.per = per
        self.capacity = burst if burst is not None else max(1.0, rate)
        if self.capacity < 1:
            raise ValueError("burst must be at least 1")
        self._clock = clock
        self._tokens = self.capacity
        self._updated = clock()
        self._blocked_until = 0.0
        self._lock = threading.Lock()

    @classmethod
    def from_spec(cls, spec: str) -> TokenBucket:
        """A bucket from a config rate such as `"1/s"`, `"30/min"`, `"500/h"`."""
        rate, per = parse_rate(spec)
        return cls(rate, per)

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate / self.per)
        self._updated = now

    def try_acquire(self) -> float:
        """Take a token if one is there and return 0.0; else return the seconds to wait."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            if now < self._blocked_until:
                return self._blocked_until - now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) * self.per / self.rate

    def delay(self) -> float:
        """Seconds until a token will be available (0.0: now), without taking it."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            if now < self._blocked_until:
                return self._blocked_until - now
            return 0.0 if self._tokens >= 1 else (1 - self._tokens) * self.per / self.rate

    async def acquire(self) -> None:
        """Wait until a token is available and take it."""
        while (wait := self.try_acquire()) > 0:
            await asyncio.sleep(wait)

    def defer(self, seconds: float) -> None:
        """Hand out no token for `seconds` (the destination answered 429 with Retry-After)."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            self._blocked_until = max(self._blocked_until, now + seconds)
            self._tokens = 0.0
