"""The regex budget of one article, and which rules keep running it out.

Owns how a `/regex/` leaf is run: with the `regex` package's `timeout=` (its own limit per
field) and `concurrent=True` (the GIL is released while it runs, so matching in a thread never
stalls the event loop), charged against `ArticleBudget`, the total regex time one article may
cost, and `PollBudget`, the total of one poll's articles (so a feed of thousands of crafted
entries costs seconds, not hours). When a budget is spent, every regex still to run counts as
not matched, and the reason is kept for the explanation. `run_matching` runs matching in
threads of its own, so slow matching never holds up the store's or /healthz's threads.

`RuleBudgetStats` is the process-wide tally of the rules whose regexes were abandoned on an
article, read by the daemon's /healthz JSON and /metrics (and through /healthz by `monitor
status`): a log line names such a rule at most once per `REPORT_EVERY` seconds, never once
per article, so a hostile feed cannot flood the log.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import json
import logging
import math
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

#: Default total seconds of regex matching one article may cost (`daemon.regex_budget`).
DEFAULT_BUDGET = 0.2
#: Seconds between two log lines about the same rule.
REPORT_EVERY = 300.0

T = TypeVar("T")


class ArticleBudget:
    """The regex time left for one article. Not shared between threads (one per match call)."""

    __slots__ = ("abandoned", "charged", "limit", "poll", "rule", "spent")

    def __init__(self, limit: float = math.inf) -> None:
        self.limit = limit
        self.spent = 0.0
        #: The budget of the poll this article came in (`poll_budget`), if any.
        self.poll = _POLL.get()
        #: The rule being evaluated, so that a regex given up is charged to it.
        self.rule = ""
        #: (id of the leaf, field) -> why that regex counted as not matched there.
        self.abandoned: dict[tuple[int, str], str] = {}
        self.charged: set[str] = set()

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.limit

    def finditer(
        self, leaf: object, pattern: Any, text: str, field: str, timeout: float
    ) -> list[tuple[int, int]] | None:
        """The spans of `pattern` in `text`, or None if it ran out of time (not matched).

        `timeout` is the regex's own limit on one field; the article's remaining budget may
        make it shorter.
        """
        key = (id(leaf), field)
        left = self.limit - self.spent
        if self.poll is not None:
            left = min(left, self.poll.left())
        if left <= 0:
            self.abandoned.setdefault(key, self._out_of_budget("not run"))
            return None
        limit = min(timeout, left)
        started = time.perf_counter()
        try:
            return [m.span() for m in pattern.finditer(text, timeout=limit, concurrent=True)]
        except TimeoutError:
            if limit < timeout:
                self.abandoned[key] = self._out_of_budget(f"stopped after {limit * 1000:.0f} ms")
            else:
                self.abandoned[key] = f"gave up after {timeout * 1000:.0f} ms on this field"
            if self.rule and self.rule not in self.charged:  # once per article and rule
                self.charged.add(self.rule)
                RuleBudgetStats.record(self.rule, self.limit)
            return None
        finally:
            took = time.perf_counter() - started
            self.spent += took
            if self.poll is not None:
                self.poll.charge(took)

    def _out_of_budget(self, what: str) -> str:
        if self.poll is not None and self.poll.left() <= 0 and self.spent < self.limit:
            return f"{what}: the poll's {self.poll.limit:g} s regex budget ran out"
        return f"{what}: the article's {self.limit * 1000:.0f} ms regex budget ran out"


class RuleBudgetStats:
    """Per rule: on how many articles one of its regexes was abandoned, since the start."""

    _lock = threading.Lock()
    _counts: dict[str, int] = {}  # noqa: RUF012 - process-wide on purpose
    _unlogged: dict[str, int] = {}  # noqa: RUF012
    _logged_at: dict[str, float] = {}  # noqa: RUF012

    @classmethod
    def record(cls, rule: str, budget: float, now: float | None = None) -> None:
        """Count one article on which a regex of `rule` was abandoned; log it at most once per
        `REPORT_EVERY` seconds per rule (with the count since the last line)."""
        at = time.monotonic() if now is None else now
        with cls._lock:
            cls._counts[rule] = cls._counts.get(rule, 0) + 1
            cls._unlogged[rule] = cls._unlogged.get(rule, 0) + 1
            last = cls._logged_at.get(rule)
            if last is not None and at - last < REPORT_EVERY:
                return
            cls._logged_at[rule] = at
            count = cls._unlogged.pop(rule)
        shown = "no limit" if math.isinf(budget) else f"{budget * 1000:.0f} ms per article"
        log.warning(
            "rule %r: a regex gave up, out of time, on %d article(s)%s (regex budget %s); "
            "it counts as not matched there: simplify the pattern",
            rule,
            count,
            "" if last is None else f" in the last {at - last:.0f} s",
            shown,
        )

    @classmethod
    def snapshot(cls) -> dict[str, int]:
        """Rule -> articles on which one of its regexes was abandoned, since the start."""
        with cls._lock:
            return dict(cls._counts)

    @classmethod
    def reset(cls) -> None:
        """Forget every count (for a test, or a process that starts over)."""
        with cls._lock:
            cls._counts.clear()
            cls._unlogged.clear()
            cls._logged_at.clear()


def counts_from_health(listen: str | None, timeout: float = 1.0) -> dict[str, int] | None:
    """The running daemon's `RuleBudgetStats`, read from its /healthz JSON at `listen`
    (`daemon.health_listen`); None when there is no such endpoint or nothing answers.

    The counts live in the daemon's memory rather than the database: they are a diagnosis
    ("this rule is too slow"), not a record, and a restart that forgets them is honest.
    """
    if not listen:
        return None
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):  # listening everywhere: ask on loopback
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=timeout) as reply:
            body = reply.read(1_000_000)
    except urllib.error.HTTPError as exc:  # 503 while stalled: the JSON is still there
        body = exc.read(1_000_000)
    except (OSError, ValueError):
        return None
    try:
        counts = json.loads(body)["counters"]["regex_budget_exhausted"]
        return {str(rule): int(n) for rule, n in counts.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class PollBudget:
    """The regex time one poll may still spend over all its articles, shared by the threads
    that match them (`poll_budget` makes it the current one)."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.spent = 0.0
        self._lock = threading.Lock()

    def left(self) -> float:
        return self.limit - self.spent

    def charge(self, seconds: float) -> None:
        with self._lock:
            self.spent += seconds


_POLL: contextvars.ContextVar[PollBudget | None] = contextvars.ContextVar(
    "monitor_poll_regex_budget", default=None
)


def poll_budget(limit: float) -> PollBudget:
    """Start the regex budget of the poll running in this task (its articles' matching in
    `run_matching` threads sees it, through the copied context)."""
    budget = PollBudget(limit)
    _POLL.set(budget)
    return budget


#: Matching has threads of its own: a poll full of slow articles can only make other polls'
#: matching wait, never the store's or the health endpoint's work in asyncio's default pool.
_MATCHERS = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="rules")


async def run_matching(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` in a matcher thread, in a copy of this task's context (so with
    its poll budget)."""
    context = contextvars.copy_context()
    loop = asyncio.get_running_loop()
    call = functools.partial(context.run, fn, *args, **kwargs)
    return await loop.run_in_executor(_MATCHERS, call)
