"""The daemon's Prometheus metrics, with `prometheus_client` on a registry of its own.

`Metrics` owns one `CollectorRegistry` (never the global one, so two daemons in one test
process, or a library user's own metrics, do not collide) holding:

- histograms of fetch, parse, extract, match and delivery latency, and of publish -> alert
  latency (an alert's creation minus its article's published time);
- counters per rule (`monitor_rule_matches_total`, `monitor_rule_alerts_total`) and per channel
  and outcome (`monitor_deliveries_total{channel, outcome=sent|failed|dead}`);
- process (CPU, memory, open files), platform and build info;
- the store's state, read at each scrape from the daemon's snapshot (feeds by health, the
  outbox by status, the oldest pending delivery, the scheduler's last tick, polls and alerts
  since start). The outbox gauge is `monitor_outbox_deliveries`: the hand-written exposition
  had a gauge `monitor_deliveries` beside a counter `monitor_deliveries_total`, two families
  with one name.

The stages report to `StageMetrics` through calls at their boundaries (`monitor/stages.py`:
`with self.stages.timed("fetch")`, `stages.matched`, `stages.committed`, `stages.delivered`):
`instrument` installs it on the running pipeline and deliverer. Without a web server they keep
the no-op `Stages`, so polls cost nothing extra and this module (prometheus_client) is never
imported.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client import (
    Counter as PromCounter,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

import monitor
from monitor.stages import Stage, Stages
from monitor.store.health import CONDITIONS

if TYPE_CHECKING:
    from monitor.daemon import Runtime
    from monitor.store import CommitResult, PollResult, RuleHit

log = logging.getLogger("monitor.metrics")

#: Stage latencies: from a 1 ms parse to a 30 s slow fetch.
STAGE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: Publish -> alert: from seconds (a feed polled every minute) to a day (a late backlog).
PUBLISH_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 21600, 86400)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _SnapshotCollector(Collector):
    """The store's state as of the last `Metrics.update` (done just before each scrape)."""

    def __init__(self) -> None:
        self.snap: dict[str, Any] = {}

    def collect(self) -> Iterator[Metric]:
        snap = self.snap
        feeds = GaugeMetricFamily("monitor_feeds", "Active feeds by health.", labels=["state"])
        for state, n in sorted(snap.get("feeds", {}).items()):
            feeds.add_metric([state], float(n))
        yield feeds
        deliveries = snap.get("deliveries", {})
        outbox = GaugeMetricFamily(
            "monitor_outbox_deliveries", "Deliveries in the outbox by status.", labels=["status"]
        )
        for status, n in sorted(deliveries.get("by_status", {}).items()):
            outbox.add_metric([status], float(n))
        yield outbox
        yield GaugeMetricFamily(
            "monitor_oldest_pending_delivery_seconds",
            "Age of the oldest delivery not yet sent.",
            value=float(deliveries.get("oldest_pending_age") or 0.0),
        )
        yield GaugeMetricFamily(
            "monitor_last_tick_age_seconds",
            "Seconds since the scheduler last ticked.",
            value=float(snap.get("last_tick_age", 0.0)),
        )
        store = GaugeMetricFamily(
            "monitor_store_condition",
            "The store's condition: 1 for the current one (writable, read-only, full, locked,"
            " unreachable).",
            labels=["condition"],
        )
        now = snap.get("store", {}).get("condition", "writable")
        for condition in CONDITIONS:
            store.add_metric([condition], 1.0 if condition == now else 0.0)
        yield store
        counters = snap.get("counters", {})
        polls = CounterMetricFamily(
            "monitor_polls", "Feed polls since start by outcome.", labels=["kind"]
        )
        for kind, n in sorted(counters.get("polls", {}).items()):
            polls.add_metric([kind], float(n))
        yield polls
        yield CounterMetricFamily(
            "monitor_alerts",
            "Alerts created by this process since start.",
            value=float(sum(counters.get("alerts", {}).values())),
        )


class Metrics:
    """One daemon's metrics; `render()` is the `/metrics` body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
        Info("monitor_build", "Version of the monitor.", registry=reg).info(
            {"version": monitor.__version__, "python": platform.python_version()}
        )

        def stage(name: str, what: str, labels: Iterable[str] = ()) -> Histogram:
            return Histogram(
                f"monitor_{name}_seconds",
                what,
                labelnames=tuple(labels),
                buckets=STAGE_BUCKETS,
                registry=reg,
            )

        self.fetch = stage("fetch", "HTTP fetches of feeds and article pages.")
        self.parse = stage("parse", "Feed parsing in a worker process.")
        self.extract = stage("extract", "Article text extraction in a worker process.")
        self.match = stage("match", "Matching the rules against one article.")
        self.delivery = stage("delivery", "Sending one delivery to a channel.", ["channel"])
        self.publish_to_alert = Histogram(
            "monitor_publish_to_alert_seconds",
            "From an article's published time to its alert.",
            buckets=PUBLISH_BUCKETS,
            registry=reg,
        )
        self.rule_matches = PromCounter(
            "monitor_rule_matches", "Articles each rule matched.", ["rule"], registry=reg
        )
        self.rule_alerts = PromCounter(
            "monitor_rule_alerts", "Alerts each rule created.", ["rule"], registry=reg
        )
        self.deliveries = PromCounter(
            "monitor_deliveries",
            "Delivery attempts by channel and outcome (sent, failed, dead).",
            ["channel", "outcome"],
            registry=reg,
        )
        self._children: dict[tuple[str, str], Any] = {}
        self._snapshot = _SnapshotCollector()
        reg.register(self._snapshot)

    def _rule_counter(self, family: PromCounter, rule: str) -> Any:
        """`family.labels(rule)`, cached (the lookup cost more than the increment)."""
        key = (family._name, rule)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(rule)
        return child

    def update(self, snapshot: dict[str, Any]) -> None:
        """The daemon's snapshot (see `Daemon.snapshot`) for the next scrape."""
        self._snapshot.snap = snapshot

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # ------------------------------------------------------------------ observations

    def observed_commit(self, articles: Iterable[Any], results: Iterable[Any], now: float) -> None:
        """Per committed article: the rules that alerted, and publish -> alert latency."""
        for article, result in zip(articles, results, strict=False):
            for rule in result.alerts:
                self._rule_counter(self.rule_alerts, rule).inc()
                published = getattr(article, "published", None)
                if isinstance(published, datetime):
                    published = published.timestamp()
                if isinstance(published, int | float) and now >= published:
                    self.publish_to_alert.observe(now - published)

    # ------------------------------------------------------------------ instrumentation

    def instrument(self, rt: Runtime) -> None:
        """Record the stages of `rt`'s pipeline and deliverer (they call `StageMetrics`)."""
        stages = StageMetrics(self)
        rt.pipeline.stages = stages
        rt.deliverer.stages = stages


class _Timer:
    """One timed stage: observes its duration in `hist` when it ends (also by an error)."""

    __slots__ = ("hist", "started")

    def __init__(self, hist: Histogram) -> None:
        self.hist = hist
        self.started = 0.0

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, typ: Any, exc: BaseException | None, tb: Any) -> None:
        with _harmless():
            self.hist.observe(time.perf_counter() - self.started)


class StageMetrics(Stages):
    """What the stages report, as `Metrics`' histograms and counters. A metrics bug is
    logged, never raised into the stage that reported."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._hists: dict[str, Histogram] = {
            "fetch": metrics.fetch,
            "parse": metrics.parse,
            "extract": metrics.extract,
            "match": metrics.match,
        }

    def timed(self, stage: Stage) -> _Timer:
        return _Timer(self._hists[stage])

    def matched(self, hits: Sequence[RuleHit]) -> None:
        with _harmless():
            m = self.metrics
            for hit in hits:
                m._rule_counter(m.rule_matches, hit.route.rule).inc()

    def committed(self, poll: PollResult, results: Sequence[CommitResult]) -> None:
        with _harmless():
            articles = (new.article for new in poll.articles)
            self.metrics.observed_commit(articles, results, time.time())

    def delivered(self, channel: str, seconds: float, outcome: str | None) -> None:
        with _harmless():
            m = self.metrics
            m.delivery.labels(channel).observe(seconds)
            if outcome is not None:
                m.deliveries.labels(channel, outcome).inc()


class _Harmless:
    """A metrics bug is logged, never raised into the pipeline it observes. (A class, not
    `contextlib.contextmanager`: this runs per article, and the generator version cost 3 us.)"""

    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: Any, exc: BaseException | None, tb: Any) -> bool:
        if isinstance(exc, Exception):
            log.error("recording a metric failed (the work itself is unaffected)", exc_info=exc)
            return True
        return False


_HARMLESS = _Harmless()


def _harmless() -> _Harmless:
    return _HARMLESS
