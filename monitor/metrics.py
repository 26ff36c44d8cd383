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

The pipeline is instrumented from outside (`instrument`): the stages it calls (the fetcher,
the worker pool, the rule matching step, the commit and the deliverer's send) are wrapped on
the running objects, so the poll code itself carries no metrics calls and costs nothing extra
when no web server runs.
"""

from __future__ import annotations

import functools
import logging
import platform
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

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
from monitor.store.health import CONDITIONS

if TYPE_CHECKING:
    from monitor.daemon import Runtime

T = TypeVar("T")
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
        """Time the stages of `rt`'s pipeline and deliverer by wrapping them in place."""
        _wrap_async(rt.fetcher, "fetch", self._timed_fetch)
        for name in ("parse_feed", "parse_feed_fingerprinted"):
            _wrap_async(rt.workers, name, _timer(self.parse))
        _wrap_async(rt.workers, "extract", _timer(self.extract))
        _wrap_sync(rt.pipeline, "_prepare", self._timed_match)
        _wrap_async(rt.store, "commit", self._counted_commit)  # the one commit path of polls
        _wrap_async(rt.deliverer, "_send", self._timed_send(rt))

    def _timed_fetch(self, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def fetch(url: str, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                result = await fn(url, *args, **kwargs)
            finally:
                self.fetch.observe(time.perf_counter() - started)
            return result

        return fetch

    def _timed_match(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def prepare(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            out = fn(*args, **kwargs)
            with _harmless():
                self.match.observe(time.perf_counter() - started)
                for hit in out[2]:
                    self._rule_counter(self.rule_matches, hit.route.rule).inc()
            return out

        return prepare

    def _counted_commit(self, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def commit(poll: Any, *args: Any, **kwargs: Any) -> Any:
            committed = await fn(poll, *args, **kwargs)
            with _harmless():
                articles = (new.article for new in poll.articles)
                self.observed_commit(articles, committed.results, time.time())
            return committed

        return commit

    def _timed_send(
        self, rt: Runtime
    ) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
        outcomes = rt.deliverer.outcome_of

        def wrap(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            async def send(channel: Any, d: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await fn(channel, d)
                finally:
                    with _harmless():
                        self.delivery.labels(d.channel).observe(time.perf_counter() - started)
                        if (outcome := outcomes.pop(d.id, None)) is not None:
                            self.deliveries.labels(d.channel, outcome).inc()

            return send

        return wrap


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


def _timer(
    hist: Histogram,
) -> Callable[[Callable[..., Awaitable[T]]], Callable[..., Awaitable[T]]]:
    def wrap(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        async def timed(*args: Any, **kwargs: Any) -> T:
            started = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                hist.observe(time.perf_counter() - started)

        return timed

    return wrap


def _wrap_async(obj: object, name: str, wrapper: Callable[[Any], Any]) -> None:
    _wrap_sync(obj, name, wrapper)


def _wrap_sync(obj: object, name: str, wrapper: Callable[[Any], Any]) -> None:
    """Replace `obj.name` (a bound method) by `wrapper(method)`, once. A stage that is not
    there (the pipeline changed) is logged and left unmeasured, never an error."""
    original = getattr(obj, name, None)
    if not callable(original):
        log.warning("metrics: %s.%s not found; it is not measured", type(obj).__name__, name)
        return
    if getattr(original, "__monitor_metrics__", False):
        return
    wrapped = functools.wraps(original)(wrapper(original))
    wrapped.__monitor_metrics__ = True  # type: ignore[attr-defined]
    setattr(obj, name, wrapped)
