"""When a rule's match becomes an alert: the decision, as a pure function.

`decide(route, story)` takes the rule's route (channels, cooldown, min_sources, updates) and
what the story looks like now (this rule's earlier alert on it, how many outlets carry it, the
rule's last alert) and returns an `AlertDecision`: alert now, wait for more sources, suppress
(cooldown), send an update, or nothing. The store reads the story's state, calls `decide` and
writes what it says (`ArticleRepo`); `monitor backtest` calls the same function, so it shows
what the daemon would do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from monitor.config import SEVERITY_ORDER, Settings


@dataclass(slots=True)
class Route:
    """Where and how a rule alerts (resolved from the config once per configuration)."""

    rule: str
    severity: str
    channels: list[tuple[str, bool]]  # (channel, held for a digest)
    cooldown: float | None = None
    updates: bool = False
    min_sources: int | None = None
    within: float | None = None


#: The version of `Alert.to_dict`'s shape, stored with each alert ("v"). 2: the explanation
#: (`why`) is the match row's, no longer a copy in the alert; 1 carried it.
ALERT_VERSION = 2


@dataclass(frozen=True, slots=True)
class Alert:
    """A rule's alert on an article, built once by the pipeline and stored once (alerts.message).

    Deliveries point to it (deliveries.alert_id) and keep only what differs per channel and
    send (kind, idempotency key, the story's sources at that moment); the outbox puts the two
    together into the `AlertMessage` a channel renders.

    `why` (the rule's hits, its explanation) is stored once too: in the rule's match row
    (matches.explanation, written with the article), not in the alert's message; readers of
    the alert join the match (`from_dict(d, why=...)`). Messages of version 1 carried it.
    """

    rule: str
    severity: str
    title: str
    url: str | None
    source: str  # the feed's name
    published: datetime | None
    snippet: str
    highlights: list[tuple[int, int]]
    why: list[dict[str, Any]]  # the hits: field, leaf, text, start, end
    created_at: datetime
    version: int = ALERT_VERSION
    enclosures: list[dict[str, Any]] = field(default_factory=list)  # url, type, length

    def to_dict(self) -> dict[str, Any]:
        """The stored message: everything but `why`, which its match row holds."""
        return {
            "v": self.version,
            "rule": self.rule,
            "severity": self.severity,
            "title": self.title,
            "url": self.url,
            "source": self.source,
            "published": self.published.isoformat() if self.published else None,
            "snippet": self.snippet,
            "highlights": [[s, e] for s, e in self.highlights],
            "created_at": self.created_at.isoformat(),
            "enclosures": [dict(e) for e in self.enclosures],
        }

    @staticmethod
    def from_dict(d: dict[str, Any], why: list[dict[str, Any]] | None = None) -> Alert:
        """Inverse of `to_dict`, with `why` from the alert's match row; also reads messages of
        version 1 (which carry their own `why`) and the full messages stored before them."""
        published = d.get("published")
        return Alert(
            rule=str(d.get("rule") or ""),
            severity=str(d.get("severity", "medium")),
            title=str(d.get("title", "")),
            url=d.get("url"),
            source=str(d.get("source") or ""),
            published=datetime.fromisoformat(published) if published else None,
            snippet=str(d.get("snippet", "")),
            highlights=[(int(s), int(e)) for s, e in d.get("highlights", [])],
            why=[dict(w) for w in (d.get("why", []) if why is None else why)],
            created_at=datetime.fromisoformat(str(d["created_at"])),
            version=int(d.get("v", ALERT_VERSION)),
            enclosures=[dict(e) for e in d.get("enclosures", [])],
        )


class Action(StrEnum):
    ALERT = "alert"  # send it to the route's channels
    WAIT = "wait"  # fewer outlets than min_sources: held until another one carries the story
    SUPPRESS = "suppress"  # the rule alerted within its cooldown
    UPDATE = "update"  # already alerted; the story gained an outlet and the rule wants updates
    NONE = "none"  # already alerted (or suppressed), or still waiting: nothing changes


@dataclass(frozen=True, slots=True)
class StoryState:
    """What `decide` needs to know about the story and the rule, read by the caller."""

    now: float
    previous: str | None = None  # this rule's alert on this story: waiting | sent | suppressed
    outlets: int = 1  # feeds carrying the story within the route's `within` window
    last_sent_at: float | None = None  # the rule's latest sent alert (any story)
    new_outlet: bool = False  # the article brought a new outlet to the story


@dataclass(frozen=True, slots=True)
class AlertDecision:
    action: Action
    reason: str = ""
    channels: list[tuple[str, bool]] = field(default_factory=list)  # for ALERT and UPDATE

    @property
    def stored_status(self) -> str | None:
        """The alert row's status after this decision (None: the row does not change)."""
        return {Action.ALERT: "sent", Action.WAIT: "waiting", Action.SUPPRESS: "suppressed"}.get(
            self.action
        )


def decide(route: Route, story: StoryState) -> AlertDecision:
    """Alert, wait, suppress, update or nothing, for one rule's match on one story."""
    if story.previous is not None and story.previous != "waiting":
        if route.updates and story.previous == "sent" and story.new_outlet:
            return AlertDecision(Action.UPDATE, "the story gained an outlet", route.channels)
        return AlertDecision(Action.NONE, f"already {story.previous}")
    if route.min_sources is not None and story.outlets < route.min_sources:
        why = f"{story.outlets} of {route.min_sources} sources"
        # A story already waiting stays so: nothing to write.
        return AlertDecision(Action.NONE if story.previous else Action.WAIT, why)
    if (
        route.cooldown
        and story.last_sent_at is not None
        and story.last_sent_at > story.now - route.cooldown
    ):
        why = f"cooldown: the rule alerted {story.now - story.last_sent_at:.0f} s ago"
        return AlertDecision(Action.NONE if story.previous else Action.SUPPRESS, why)
    return AlertDecision(Action.ALERT, "", route.channels)


def build_routes(settings: Settings) -> dict[str, Route]:
    """Per rule: which channels get its alerts (severity filter, digest or immediate)."""
    routes: dict[str, Route] = {}
    for rule in settings.active_rules:
        channels: list[tuple[str, bool]] = []
        for name in settings.rule_channels(rule):
            ch = settings.channels[name]
            if not ch.enabled:
                continue
            if SEVERITY_ORDER[rule.severity] < SEVERITY_ORDER[ch.min_severity]:
                continue
            channels.append((name, ch.digest is not None))
        routes[rule.name] = Route(
            rule=rule.name,
            severity=rule.severity,
            channels=channels,
            cooldown=rule.cooldown.total_seconds() if rule.cooldown else None,
            updates=rule.updates,
            min_sources=rule.min_sources,
            within=rule.within.total_seconds() if rule.within else None,
        )
    return routes


class Replay:
    """The store's side of `decide`, kept in memory: stored articles replayed in order get the
    decisions the daemon made (or would make with these routes). `monitor backtest` uses it.

    It keeps what `ArticleRepo` reads from the database: each story's outlets (each feed's
    latest article in it, by fetch time), each rule's alert per story and its last alert.
    """

    def __init__(self, routes: dict[str, Route]) -> None:
        self.routes = routes
        self._outlets: dict[int, dict[int, float]] = {}  # story -> feed -> last fetched_at
        self._status: dict[tuple[str, int], str] = {}  # (rule, story) -> stored status
        self._last_sent: dict[str, float] = {}

    def article(
        self, *, story_id: int, feed_id: int, fetched_at: float, matched: list[str]
    ) -> list[tuple[str, AlertDecision]]:
        """One stored article, in the order they were stored: the decision for each rule it
        matched, and for each alert of its story that was waiting for more sources."""
        outlets = self._outlets.setdefault(story_id, {})
        new_outlet = feed_id not in outlets and len(outlets) >= 1
        outlets[feed_id] = fetched_at
        waiting = [
            rule
            for (rule, story), status in self._status.items()
            if story == story_id and status == "waiting" and rule not in matched
        ]
        out: list[tuple[str, AlertDecision]] = []
        for rule in [*matched, *waiting]:
            route = self.routes.get(rule)
            if route is None:
                continue
            decision = decide(route, self._state(route, story_id, fetched_at, new_outlet))
            out.append((rule, decision))
            if decision.stored_status is not None:
                self._status[(rule, story_id)] = decision.stored_status
            if decision.action is Action.ALERT:
                self._last_sent[rule] = fetched_at
        return out

    def _state(self, route: Route, story_id: int, now: float, new_outlet: bool) -> StoryState:
        since = now - (route.within or 0)
        return StoryState(
            now=now,
            previous=self._status.get((route.rule, story_id)),
            outlets=sum(1 for t in self._outlets[story_id].values() if t >= since),
            last_sent_at=self._last_sent.get(route.rule),
            new_outlet=new_outlet,
        )
