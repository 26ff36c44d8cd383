"""When to poll a feed next: after a success, after a failure.

Pure functions of the feed's config, what the server told us (RSS ttl / skipHours / skipDays,
Cache-Control max-age, Retry-After), its failure count and, with `defaults.adaptive`, how many
entries it published recently. The store keeps the result (`next_poll_at`), never a
scheduler's memory.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

#: How far back `adaptive_interval` counts a feed's entries (as Miniflux's entry-frequency
#: scheduler does: a week smooths out a quiet weekend or one busy news day).
ADAPTIVE_WINDOW = 7 * 24 * 3600.0

_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class Skip(NamedTuple):
    """The hours (UTC) and days a feed said it does not update (RSS skipHours / skipDays)."""

    hours: frozenset[int] = frozenset()
    days: frozenset[str] = frozenset()


NO_SKIP = Skip()


def next_poll_after_success(
    now: float,
    *,
    interval: float,
    bounds: tuple[float, float],
    server_min: Iterable[float | None] = (),
    skip: Skip = NO_SKIP,
    jitter: float = 0.1,
    rng: random.Random | None = None,
) -> float:
    """The next poll time: the configured interval, raised to what the server asked for.

    `bounds` is (min_interval, max_interval). `server_min` are lower bounds from the feed (ttl)
    and HTTP (max-age); they never push the interval past `max_interval`. A small jitter
    spreads feeds that share an interval so they do not all fall due on the same tick.
    """
    min_interval, max_interval = bounds
    delay = max(interval, min_interval)
    for bound in server_min:
        if bound:
            delay = max(delay, min(bound, max_interval))
    delay = min(delay, max(max_interval, interval))
    r = rng or random
    delay *= 1 + r.uniform(-jitter, jitter) if jitter else 1
    when = now + max(delay, 1.0)
    return _skip(when, skip.hours, skip.days)


def adaptive_interval(
    recent_entries: int, *, window: float, min_interval: float, max_interval: float
) -> float:
    """The polling interval of a feed that published `recent_entries` entries in `window`
    seconds: one poll per expected new entry, bounded by `min_interval` and `max_interval`.

    A feed with no recent entry is polled at `max_interval`; a busy one at `min_interval`.
    """
    if recent_entries <= 0:
        return max_interval
    return min(max(window / recent_entries, min_interval), max(max_interval, min_interval))


def _skip(when: float, skip_hours: frozenset[int], skip_days: frozenset[str]) -> float:
    """Move `when` past the hours (UTC) and days the feed said it does not update."""
    if not skip_hours and not skip_days:
        return when
    if len(skip_hours) >= 24 or len({d.lower() for d in skip_days} & set(_DAYS)) >= 7:
        return when  # a feed that skips everything is broken metadata: ignore it
    t = datetime.fromtimestamp(when, UTC)
    for _ in range(24 * 8):
        if t.hour not in skip_hours and _DAYS[t.weekday()] not in {d.lower() for d in skip_days}:
            return t.timestamp()
        t = (t + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    return when


def next_poll_after_failure(
    now: float,
    *,
    failures: int,
    base: float,
    cap: float,
    retry_after: float | None,
    rng: random.Random | None = None,
) -> float:
    """Retry-After is obeyed exactly; otherwise capped exponential backoff with full jitter.

    `failures` counts this failure too (1 after the first). The delay never falls below half
    the exponential step, so a run of bad luck in the jitter cannot hammer a failing server.
    """
    if retry_after is not None and retry_after >= 0:
        return now + retry_after
    step = min(cap, base * (2 ** max(0, failures - 1)))
    r = rng or random
    return now + r.uniform(step / 2, step)
