"""What a poll changes about its feed: the decision, as pure functions.

`plan_next_poll` (after a good poll) and `plan_after_failure` take a snapshot of the feed
(`FeedState`), what the fetch said, the feed's hints and its resolved polling policy, and
return ONE `FeedUpdate`: the next poll time, validators, the server's lower bound, a move after
repeated permanent redirects, the failure count and the health event. The store applies it
(`FeedRepo.apply`) and decides nothing; `monitor.schedule` holds the interval arithmetic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from monitor.models import FeedState, ParsedFeed
from monitor.schedule import (
    ADAPTIVE_WINDOW,
    Skip,
    adaptive_interval,
    next_poll_after_failure,
    next_poll_after_success,
)

#: A permanent redirect to the same address seen this many polls in a row moves the feed.
MOVE_AFTER_REDIRECTS = 3

HealthEvent = Literal["source.broken", "source.recovered"]


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """A feed's polling settings, resolved from its config and the defaults."""

    interval: float
    min_interval: float
    max_interval: float
    adaptive: bool  # the feed has no interval of its own and `defaults.adaptive` is on
    backoff_base: float
    backoff_max: float
    broken_after: float
    host_wide_retry_after: bool = False  # fetch.retry_after_scope == "host"


@dataclass(frozen=True, slots=True)
class FetchSummary:
    """What the fetch said about the feed (not its body)."""

    changed: bool  # False: 304 Not Modified, or the same body as last time
    etag: str | None = None
    last_modified: str | None = None
    content_hash: str | None = None
    permanent_redirect: str | None = None
    not_modified: bool = False  # answered 304 (counted per feed for the console)


@dataclass(frozen=True, slots=True)
class FeedHints:
    """What the server asked for: RSS ttl and skipHours/skipDays (from a body that was parsed,
    None when unchanged) and HTTP Cache-Control max-age."""

    ttl: float | None = None  # seconds
    skip: Skip | None = None  # None: no new body, the stored hints still hold
    cache_max_age: float | None = None

    @staticmethod
    def of(parsed: ParsedFeed | None, cache_max_age: float | None) -> FeedHints:
        if parsed is None:
            return FeedHints(cache_max_age=cache_max_age)
        ttl = parsed.ttl_minutes * 60.0 if parsed.ttl_minutes else None
        return FeedHints(ttl, Skip(parsed.skip_hours, parsed.skip_days), cache_max_age)


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a poll failed; `retry_after` when the server said when to come back."""

    kind: str
    error: str
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class FeedUpdate:
    """Everything one poll changes about its feed (applied by `FeedRepo.apply`)."""

    now: float
    next_poll_at: float
    min_interval: float | None
    etag: str | None = None
    last_modified: str | None = None
    content_hash: str | None = None
    skip: str | None = None  # the hints to store, see `encode_skip`
    skip_changed: bool = False
    fetch_url: str | None = None  # the feed moved here (a repeated permanent redirect)
    redirect_target: str | None = None  # a permanent redirect seen, not yet followed
    redirect_same: bool = False  # ... the same as last poll's (its count goes up)
    failure: Failure | None = None  # None: a good poll
    failing_since: float | None = None
    health: HealthEvent | None = None
    defer_host: str | None = None  # hold every feed of this host until `next_poll_at`
    not_modified: bool = False  # a good poll answered 304

    @property
    def ok(self) -> bool:
        return self.failure is None


def encode_skip(skip: Skip) -> str | None:
    """`skipHours` / `skipDays` as stored: "h:0,1,2;d:saturday,sunday" (None when empty)."""
    if not skip.hours and not skip.days:
        return None
    h = ",".join(str(x) for x in sorted(skip.hours))
    d = ",".join(sorted(x.lower() for x in skip.days))
    return f"h:{h};d:{d}"[:300]


def decode_skip(value: str | None) -> Skip:
    """Inverse of `encode_skip`; anything unreadable counts as no skip hints."""
    hours: set[int] = set()
    days: set[str] = set()
    for part in (value or "").split(";"):
        kind, _, items = part.partition(":")
        for item in filter(None, items.split(",")):
            if kind == "h" and item.isdigit() and int(item) < 24:
                hours.add(int(item))
            elif kind == "d":
                days.add(item)
    return Skip(frozenset(hours), frozenset(days))


def _server_min(state: FeedState, fetch: FetchSummary, hints: FeedHints) -> float | None:
    """The server's lower bound on the interval: the larger of ttl and max-age. An unchanged
    body's ttl still holds, so the stored bound is kept then."""
    bound = max(hints.ttl or 0.0, hints.cache_max_age or 0.0)
    if not fetch.changed:
        bound = max(bound, state.min_interval or 0.0)
    return bound or None


def plan_next_poll(
    state: FeedState,
    fetch: FetchSummary,
    hints: FeedHints,
    policy: PollPolicy,
    now: float,
    *,
    recent_entries: int = 0,
    rng: random.Random | None = None,
) -> FeedUpdate:
    """The feed's update after a good poll. `recent_entries`: how many entries it published in
    the last `ADAPTIVE_WINDOW` (this poll's new ones included), read only when adaptive."""
    server_min = _server_min(state, fetch, hints)
    skip = hints.skip if hints.skip is not None else decode_skip(state.skip)
    stored_skip = encode_skip(skip)
    interval = policy.interval
    if policy.adaptive:
        # Busier feeds more often: one poll per entry the feed published in the window.
        interval = adaptive_interval(
            recent_entries,
            window=ADAPTIVE_WINDOW,
            min_interval=policy.min_interval,
            max_interval=policy.max_interval,
        )
    next_at = next_poll_after_success(
        now,
        interval=interval,
        bounds=(policy.min_interval, policy.max_interval),
        server_min=(server_min,),
        skip=skip,
        rng=rng,
    )
    redirect = fetch.permanent_redirect
    same = redirect is not None and redirect == state.redirect_target
    moved = same and state.redirect_count + 1 >= MOVE_AFTER_REDIRECTS
    if fetch.changed:
        etag, last_modified, content_hash = fetch.etag, fetch.last_modified, fetch.content_hash
    else:  # a 304 may leave out the validators; the stored ones still hold
        etag = fetch.etag or state.etag
        last_modified = fetch.last_modified or state.last_modified
        content_hash = state.content_hash
    return FeedUpdate(
        now=now,
        next_poll_at=next_at,
        min_interval=server_min,
        etag=etag,
        last_modified=last_modified,
        content_hash=content_hash,
        skip=stored_skip,
        skip_changed=stored_skip != state.skip,
        fetch_url=redirect if moved else None,
        redirect_target=None if moved else redirect,
        redirect_same=same and not moved,
        health="source.recovered" if state.broken_reported else None,
        not_modified=fetch.not_modified,
    )


def plan_after_failure(
    state: FeedState,
    failure: Failure,
    policy: PollPolicy,
    now: float,
    *,
    host: str = "",
    rng: random.Random | None = None,
) -> FeedUpdate:
    """The feed's update after a failed poll: capped exponential backoff, raised (never
    lowered) by Retry-After, and the broken event once it has failed for `broken_after`.

    A `Retry-After: 0` or a date in the past must not make a failing feed be polled on every
    tick: the backoff is the floor (issue 13, item 7).
    """
    backoff = next_poll_after_failure(
        now,
        failures=state.consecutive_failures + 1,
        base=policy.backoff_base,
        cap=policy.backoff_max,
        retry_after=None,
        rng=rng,
    )
    next_at = backoff
    if failure.retry_after is not None:
        next_at = max(backoff, now + failure.retry_after)
    failing_since = state.failing_since if state.failing_since is not None else now
    broken = not state.broken_reported and now - failing_since >= policy.broken_after
    defer = failure.retry_after is not None and policy.host_wide_retry_after
    return FeedUpdate(
        now=now,
        next_poll_at=next_at,
        min_interval=state.min_interval,
        failure=failure,
        failing_since=failing_since,
        health="source.broken" if broken else None,
        defer_host=host if defer else None,
    )
