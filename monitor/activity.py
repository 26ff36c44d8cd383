"""The daemon's periodic one-line INFO summary: what it did since the last one.

At INFO the daemon is quiet (a line per alert, per problem) but says every
`daemon.summary_every` that it is alive and working: polls (and how many were 304s or
failed), new entries, alerts, deliveries sent and failed. Every poll's own line is at DEBUG
(`PollOutcome.describe`). `Activity` holds the running totals the daemon counts; `summary`
is the pure part: the line for the difference between two snapshots.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Totals:
    """Counts since start: polls by outcome status, new entries, alerts, deliveries by
    outcome (sent, failed, dead)."""

    polls: Mapping[str, int] = field(default_factory=dict)
    new: int = 0
    alerts: int = 0
    deliveries: Mapping[str, int] = field(default_factory=dict)


def summary(before: Totals, now: Totals, seconds: float) -> str:
    """The INFO line for what happened between two snapshots, `seconds` apart."""
    polls = Counter(now.polls)
    polls.subtract(before.polls)
    sent = Counter(now.deliveries)
    sent.subtract(before.deliveries)
    not_modified = polls["not_modified"] + polls["unchanged"]
    failed = polls["failed"]
    return (
        f"last {_span(seconds)}: {polls.total()} polls ({not_modified} unchanged, "
        f"{failed} failed), {now.new - before.new} new entries, "
        f"{now.alerts - before.alerts} alerts, {sent['sent']} deliveries sent, "
        f"{sent['failed'] + sent['dead']} failed ({sent['dead']} dead)"
    )


def _span(seconds: float) -> str:
    if seconds >= 90:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


class Activity:
    """The previous summary's snapshot and time (one per daemon)."""

    def __init__(self, now: float) -> None:
        self._last = Totals()
        self._last_at = now

    def line(self, totals: Totals, now: float) -> str:
        """The summary since the previous call (or since start), and remember `totals`."""
        text = summary(self._last, totals, now - self._last_at)
        self._last, self._last_at = totals, now
        return text
