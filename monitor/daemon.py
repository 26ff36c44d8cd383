"""Wiring: builds the stages from a config and runs them, once or as a long-running daemon.

APScheduler 3.11 (`AsyncIOScheduler`, memory job store) is only the in-process ticker and cron;
which feeds and deliveries are due lives in the store, leased per node, so a restart or a
second node never loses or repeats work. Signals: SIGINT/SIGTERM stop cleanly (in-flight polls
get a grace period, unfinished work stays in the store), SIGHUP reloads the config and keeps
the running one if the new one does not validate.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import signal
import socket
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from monitor.activity import Activity, Totals
from monitor.checks import CheckedConfig, compile_settings
from monitor.config import Settings, load_config
from monitor.delivery import Deliverer
from monitor.errors import ConfigError
from monitor.fetch import Fetcher
from monitor.logs import setup_logging as setup_logging  # re-exported; lives in monitor.logs
from monitor.pipeline import Pipeline, PollOutcome
from monitor.poll_loop import LoopConfig, PollLoop
from monitor.rules.budget import RuleBudgetStats
from monitor.store import FeedSpec, Store, release_owned, retention
from monitor.store.engine import DatabaseError
from monitor.store.health import refuse_read_only
from monitor.store.leases import Heartbeat, Held
from monitor.store.retention import Pruned, RetentionPolicy
from monitor.workers import WorkerPool

if TYPE_CHECKING:
    import httpx

    from monitor.notify.base import Channel
    from monitor.web.server import WebServer

log = logging.getLogger("monitor.daemon")

#: Seconds after a digest period's end before it is collected (commits in flight finish).
DIGEST_GRACE = 2.0


class LazyClient:
    """The delivery `httpx.AsyncClient`, built at its first use: channels hold this in its
    place, and a pass that delivers nothing never imports httpx or builds an SSL context."""

    def __init__(self, user_agent: str) -> None:
        self._user_agent = user_agent
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(
                trust_env=False, follow_redirects=False, headers={"User-Agent": self._user_agent}
            )
        return self._client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


@dataclass
class CycleReport:
    polls: list[PollOutcome] = field(default_factory=list)
    delivered: int = 0

    @property
    def alerts(self) -> int:
        return sum(p.alerts for p in self.polls)


class Runtime:
    """Everything a running monitor holds: store, HTTP clients, workers, rules, channels."""

    def __init__(self, checked: CheckedConfig, *, config_path: str | None = None) -> None:
        self.config_path = config_path
        self.settings = checked.settings
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.store = Store(self.settings.database, pool_size=self.settings.database_pool_size)
        # The feeds and deliveries in flight, whose short leases the heartbeat renews.
        self.held = Held()
        self.heartbeat = Heartbeat(
            self.store.engine,
            self.owner,
            self.held,
            term=lambda: self.settings.daemon.lease_term.total_seconds(),
            every=lambda: self.settings.daemon.heartbeat.total_seconds(),
            clock=time.time,
        )
        self._heartbeat: tuple[asyncio.Task[None], asyncio.Event] | None = None
        self.fetcher = Fetcher(self.settings.fetch)
        # trafilatura is preloaded by the workers' forkserver only if some feed extracts (a
        # page the rule tester fetches, or a feed a reload turns it on for, imports it then).
        extracts = any(f.extract for f in self.settings.feeds)
        self.workers = WorkerPool(self.settings.fetch.workers, extraction=extracts)
        # Deliveries go to receivers the user configured (often on private networks), so
        # they use their own client without the feed fetcher's SSRF guard; it is built at the
        # first delivery (its SSL context alone costs a `once` pass 0.2 s).
        self.http = LazyClient(self.settings.fetch.user_agent_string)
        self.channels = self._channels(self.settings)
        self.pipeline = Pipeline(
            self.settings, self.store, self.fetcher, self.workers, checked.ruleset
        )
        self.deliverer = Deliverer(
            self.store.outbox,
            self.channels,
            self.settings.delivery,
            owner=self.owner,
            held=self.held.deliveries,
            lease_term=self.settings.daemon.lease_term.total_seconds(),
        )
        self._vacuum_checked = False
        if problem := refuse_read_only(self.store.engine, self.store.health.database):
            raise DatabaseError(problem)  # nothing could ever be stored: one line, exit 1
        self._sync_feeds()
        # Work a killed predecessor on this host left leased is taken back at once.
        if reclaimed := self.store.reclaim_orphaned_leases(
            socket.gethostname(), time.time(), me=self.owner
        ):
            log.info("took back %d leases held by a process that is gone", reclaimed)

    def freeze(self) -> None:
        """For a long-running process: what exists now (modules, config, rules, schema: ~100,000
        objects) lives as long as the process. Frozen out of the cyclic collector, full
        collections stop walking it again and again: it was 14% of the daemon's CPU in a cold
        poll of 200 feeds. Garbage is collected first, so none of it is kept forever: also the
        little (~2,000 objects) among what the command line froze after its imports, which is
        unfrozen for this collection. (`once` skips it: the collection alone costs a short
        pass 0.17 s.)"""
        gc.unfreeze()
        gc.collect()
        gc.freeze()

    def _channels(self, settings: Settings) -> dict[str, Channel]:
        enabled = {name: cfg for name, cfg in settings.channels.items() if cfg.enabled}
        if not enabled:
            return {}
        from monitor.notify import build_channel  # httpx, Jinja2: only with channels

        client = cast("httpx.AsyncClient", self.http)
        channels = {name: build_channel(name, cfg, client=client) for name, cfg in enabled.items()}
        if any(type(ch).http for ch in channels.values()):
            # Built now, not inside a channel's first send: there it would come after the
            # channel's rate limiter and bunch the first messages together.
            self.http.client  # noqa: B018
        return channels

    def _sync_feeds(self) -> None:
        specs = [FeedSpec(f.url, f.display_name, f.allow_private) for f in self.settings.feed_list]
        self.store.feeds.sync(specs, time.time())

    def start_heartbeat(self) -> None:
        """Renew the leases of the work in flight every `daemon.heartbeat` until `aclose`."""
        # One per event loop: `monitor once` and the tests run several loops one after another.
        if self._heartbeat is None or self._heartbeat[0].done():
            stop = asyncio.Event()
            self._heartbeat = (asyncio.create_task(self.heartbeat.run(stop)), stop)

    async def aclose(self) -> None:
        if self._heartbeat is not None:
            task, stop = self._heartbeat
            self._heartbeat = None
            if task.get_loop() is asyncio.get_running_loop():
                stop.set()
                await asyncio.gather(task, return_exceptions=True)
        for ch in self.channels.values():
            with contextlib.suppress(Exception):
                await ch.aclose()
        await self.http.aclose()
        await self.fetcher.aclose()
        self.workers.close()
        self.store.close()

    # ------------------------------------------------------------------ work

    async def poll_due(
        self,
        *,
        stop: asyncio.Event | None = None,
        on_outcome: Callable[[PollOutcome], object] | None = None,
        recheck: float | None = None,
    ) -> list[PollOutcome]:
        """Poll every due feed, at most `fetch.concurrency` at once, until none is due (see
        `monitor.poll_loop` for `stop`, `on_outcome` and `recheck`)."""
        self.start_heartbeat()  # the leases below are short: renewed while polls run
        d = self.settings.daemon
        config = LoopConfig(
            owner=self.owner,
            window=self.settings.fetch.concurrency,
            batch=d.feed_batch,
            lease=d.lease_term.total_seconds(),
            recheck=recheck,
            held=self.held.feeds,
        )
        return await PollLoop(self.pipeline, self.store, config).run(
            stop=stop, on_outcome=on_outcome
        )

    async def run_cycle(self) -> CycleReport:
        """`monitor once`: poll every feed, process, deliver everything due, return."""
        report = CycleReport()
        await asyncio.to_thread(self.store.feeds.poll_now, time.time())
        report.polls = await self.poll_due()
        await self.collect_due_digests()
        report.delivered = await self.deliverer.drain()
        await self.prune_stories()
        return report

    async def prune_stories(self) -> int:
        """Run retention (`prune`); how many story keys and bands went (they leave with the
        story window whatever `retention` says)."""
        pruned = await self.prune()
        return pruned.story_keys + pruned.story_bands

    async def prune(self) -> Pruned:
        """Delete what `retention` and `stories.window` let go, in small batches through the
        store's writer, and give SQLite's freed pages back (monitor/store/retention.py)."""
        try:
            if not self._vacuum_checked:
                self._vacuum_checked = True
                if said := await asyncio.to_thread(
                    retention.ensure_incremental_vacuum, self.store.engine
                ):
                    log.warning("retention: %s", said)
            pruned = await retention.prune(self.store, RetentionPolicy.of(self.settings))
        except Exception:
            log.exception("retention: pruning failed (will retry)")
            return Pruned()
        if pruned.rows or pruned.vacuumed_pages:
            log.info(
                "retention: deleted %s; %d free pages given back",
                pruned.summary(),
                pruned.vacuumed_pages,
            )
        return pruned

    async def collect_due_digests(self, now: datetime | None = None) -> None:
        """Send the digest of every period that has ended (also catches up after downtime)."""
        now = now or datetime.now(UTC)
        for name, cfg in self.settings.channels.items():
            if cfg.digest and name in self.channels:
                period_end = previous_fire_time(cfg.digest, now)
                if period_end is not None:
                    # Only alerts from before the period's end belong to it; later ones wait
                    # for the next period (also when this period had nothing to send).
                    await self.deliverer.collect_digest(
                        name, period_end.isoformat(), until=period_end.timestamp()
                    )

    def reload(self) -> bool:
        """Re-read the config file; keep the running config if the new one is invalid."""
        if not self.config_path:
            return False
        try:
            checked = compile_settings(load_config(self.config_path))
        except ConfigError as exc:
            log.error("reload failed, keeping the running config:\n%s", exc)
            return False
        if checked.settings.database != self.settings.database:
            log.error("reload: changing `database` needs a restart; keeping the running config")
            return False
        old_channels = self.channels
        self.settings = checked.settings
        self.channels = self._channels(self.settings)
        self.pipeline.configure(self.settings, checked.ruleset)
        self.deliverer.channels = self.channels
        self.deliverer.settings = self.settings.delivery
        self.deliverer.lease_term = self.settings.daemon.lease_term.total_seconds()
        self._sync_feeds()
        for ch in old_channels.values():
            asyncio.get_running_loop().create_task(ch.aclose())
        log.info(
            "config reloaded: %d feeds, %d rules, %d channels",
            len(self.settings.feed_list),
            len(self.settings.active_rules),
            len(self.channels),
        )
        return True


def previous_fire_time(crontab: str, now: datetime) -> datetime | None:
    """The latest time at or before `now` when `crontab` fired (UTC), within five years.

    The look-back window doubles from two minutes until it holds a fire time, so a minutely
    cron costs a few steps and a monthly or yearly one (even 29 February) is still found.
    """
    from apscheduler.triggers.cron import CronTrigger  # only with digest channels

    trigger = CronTrigger.from_crontab(crontab, timezone="UTC")
    window = timedelta(minutes=2)
    while window <= timedelta(days=5 * 366):
        t: datetime | None = trigger.get_next_fire_time(None, now - window)
        last: datetime | None = None
        while t is not None and t <= now:
            last = t
            t = trigger.get_next_fire_time(t, t + timedelta(seconds=1))
        if last is not None:
            return last
        window *= 2
    return None


class Daemon:
    """`monitor run`: the scheduler loop around a `Runtime`."""

    def __init__(self, runtime: Runtime) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler  # `once` has no scheduler

        self.rt = runtime
        self.stopping = asyncio.Event()
        self.poller: asyncio.Task[list[PollOutcome]] | None = None
        self._running: set[asyncio.Task[Any]] = set()  # scheduler jobs being run
        self._busy: set[str] = set()  # ids of the jobs being run
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.polls: Counter[str] = Counter()
        self.alerts = 0
        self.new_entries = 0
        self.activity = Activity(time.monotonic())  # the periodic INFO summary
        self.last_tick = time.monotonic()
        self.web: WebServer | None = None

    async def run(self) -> None:
        self.rt.freeze()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        with contextlib.suppress(NotImplementedError, AttributeError):
            loop.add_signal_handler(signal.SIGHUP, self._reload)
        d = self.rt.settings.daemon
        # With `poll_on_start` (one node) every healthy feed is due at start-up: what appeared
        # while the daemon was down is seen now, not an interval later (failing feeds keep
        # their backoff). Without it (several nodes) only the feeds that fell due are, and the
        # work a killed predecessor of this node left leased was taken back (`Runtime`), so a
        # node started beside running ones does not poll their fresh feeds again. Leases of
        # the work in flight are renewed from now on.
        if d.poll_on_start:
            await asyncio.to_thread(self.rt.store.feeds.poll_now, time.time())
        self.rt.start_heartbeat()
        # Each job runs at most once at a time; a missed run is coalesced, never queued.
        # Each digest channel has a job on its own cron (see `_schedule_digests`); besides,
        # digest periods are checked every minute, so a period that ended while the daemon was
        # down is sent on start-up (and never twice). Retention runs every `retention.every`,
        # the first time a minute after start-up.
        now = datetime.now(UTC)
        jobs: list[tuple[str, Callable[[], Awaitable[Any]], float, datetime]] = [
            ("feeds", self._feeds_tick, d.tick.total_seconds(), now),
            ("deliveries", self._delivery_tick, d.deliver_every.total_seconds(), now),
            ("digests", self.rt.collect_due_digests, 60.0, now),
            (
                "prune",
                self.rt.prune,
                self.rt.settings.retention.every.total_seconds(),
                now + timedelta(minutes=1),
            ),
        ]
        if d.summary_every.total_seconds() > 0:  # the first one a period from now
            every = d.summary_every.total_seconds()
            jobs.append(("summary", self._summary, every, now + timedelta(seconds=every)))
        for job_id, func, seconds, first in jobs:
            self.scheduler.add_job(
                self._job(func, job_id),
                "interval",
                seconds=seconds,
                # Two, not one: a run due while the previous one is still going (a delivery
                # round longer than `deliver_every`) returns at once (`_job`), where with one
                # APScheduler would log "maximum number of running instances reached" every
                # second of the round.
                max_instances=2,
                coalesce=True,
                id=job_id,
                next_run_time=first,
            )
        if self.rt.settings.web is not None or d.health_listen:
            from monitor.web.server import start_web  # loaded only when configured

            try:
                self.web = await start_web(self)  # console, /healthz, /readyz, /metrics
            except BaseException:
                await self.rt.aclose()
                raise
        self._schedule_digests()
        self.scheduler.start()
        log.info(
            "monitor running: %d feeds, %d rules, %d channels (node %s)",
            len(self.rt.settings.feed_list),
            len(self.rt.settings.active_rules),
            len(self.rt.channels),
            self.rt.owner,
        )
        try:
            await self.stopping.wait()
        finally:
            await self._stop()

    async def _stop(self) -> None:
        """The stop sequence (SIGTERM, SIGINT): nothing new starts; what runs gets the grace.

        The scheduler is paused, not shut down: its shutdown cancels the jobs it is running,
        which cut a delivery in flight. `stopping` ends the poll loop's leasing and the
        delivery rounds' claiming; deliveries claimed but not started are handed back at once.
        Polls in flight and the deliveries being sent get `daemon.stop_grace` to finish; what
        is still running then is cancelled, and every feed lease and delivery claim this node
        still holds is given back, so another node (or the restarted daemon) takes the work at
        once instead of waiting for the lease to expire. Nothing stored is lost either way.
        """
        log.info("stopping")
        self.scheduler.pause()
        self.rt.deliverer.stop()
        if self.web is not None:
            await self.web.stop()
        running = set(self._running)
        if self.poller is not None:
            running.add(self.poller)
        grace = self.rt.settings.daemon.stop_grace.total_seconds()
        if running:
            _done, pending = await asyncio.wait(running, timeout=grace)
            if pending:
                log.warning(
                    "%d task(s) still running after the %g s stop grace: cancelled, their "
                    "deliveries and feeds are given back",
                    len(pending),
                    grace,
                )
            for task in pending:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        self.scheduler.shutdown(wait=False)
        try:
            feeds, claims = await self.rt.store.writer.run(
                functools.partial(release_owned, owner=self.rt.owner)
            )
        except Exception:
            log.exception("could not give back leases at stop (they expire on their own)")
        else:
            if feeds or claims:
                log.info("gave back %d feed lease(s) and %d delivery claim(s)", feeds, claims)
        await self.rt.aclose()
        log.info("stopped")

    async def snapshot(self) -> dict[str, Any]:
        """What /healthz and /metrics report."""
        # Bounded queries (indexes on health and status), not every feed and delivery.
        states = await asyncio.to_thread(self.rt.store.feeds.health_counts)
        deliveries = await asyncio.to_thread(self.rt.store.outbox.backlog, time.time())
        return {
            "feeds": states,
            "deliveries": deliveries,
            "counters": {
                "polls": dict(self.polls),
                "alerts": {"": self.alerts},
                "deliveries": dict(self.rt.deliverer.counts),
                "regex_budget_exhausted": RuleBudgetStats.snapshot(),  # by rule name
            },
            "last_tick_age": time.monotonic() - self.last_tick,
        }

    def _job(self, fn: Callable[[], Awaitable[Any]], name: str) -> Callable[[], Awaitable[None]]:
        """`fn` as a scheduler job whose run the stop can wait for (`_running`); a run due
        while the previous run of `name` is still going returns at once."""

        @functools.wraps(fn)
        async def job() -> None:
            if name in self._busy:
                return
            task = asyncio.current_task()
            assert task is not None
            self._running.add(task)
            self._busy.add(name)
            try:
                await fn()
            except Exception as exc:
                if self.rt.store.health.failed(exc) is None:  # a store fault: its health logs
                    raise
            except asyncio.CancelledError:
                if not self.stopping.is_set():
                    raise
                # Cancelled by the stop once its grace period ran out: expected, not an error.
            finally:
                self._running.discard(task)
                self._busy.discard(name)

        return job

    def _reload(self) -> None:
        """SIGHUP: reload the config; digest jobs follow the channels' new crons."""
        if self.rt.reload():
            self._schedule_digests()

    def _schedule_digests(self) -> None:
        """One job per digest channel, on the channel's cron: a period's digest is collected
        `DIGEST_GRACE` seconds after its end (the minutely check alone sent it up to a minute
        late)."""
        from apscheduler.triggers.cron import CronTrigger

        for job in self.scheduler.get_jobs():
            if job.id.startswith("digest:"):
                job.remove()
        for name, cfg in self.rt.settings.channels.items():
            if cfg.digest and name in self.rt.channels:
                self.scheduler.add_job(
                    self._job(self._digest_due, f"digest:{name}"),
                    CronTrigger.from_crontab(cfg.digest, timezone="UTC"),
                    id=f"digest:{name}",
                    max_instances=2,  # see the interval jobs in `run`
                    coalesce=True,
                    misfire_grace_time=60,
                )

    async def _digest_due(self) -> None:
        # A poll that created an alert just before the period's end may still be committing:
        # it gets a moment, or its alert would wait for the next period.
        await asyncio.sleep(DIGEST_GRACE)
        try:
            await self.rt.collect_due_digests()  # sent by the next delivery tick
        except Exception:
            log.exception("collecting digests failed (the minutely check retries)")

    def _polled(self, outcome: PollOutcome) -> None:
        self.polls[outcome.status] += 1
        self.alerts += outcome.alerts
        self.new_entries += outcome.new if outcome.status == "new" else 0

    async def _summary(self) -> None:
        deliveries = dict(self.rt.deliverer.counts)  # a copy: the next summary diffs it
        totals = Totals(dict(self.polls), self.new_entries, self.alerts, deliveries)
        log.info("%s", self.activity.line(totals, time.monotonic()))

    async def _feeds_tick(self) -> None:
        """Keep one poll loop (`Runtime.poll_due`) running while feeds are due.

        The loop leases as fast as polls finish, so a backlog (every feed due at start-up) is
        worked off at the pipeline's speed, not `feed_batch` feeds per tick; while it runs it
        looks for newly due feeds every `tick` itself, and it returns once nothing is due.
        """
        self.last_tick = time.monotonic()
        if self.stopping.is_set() or (self.poller is not None and not self.poller.done()):
            return
        if (
            self.poller is not None
            and not self.poller.cancelled()
            and (exc := self.poller.exception()) is not None
        ):
            log.error("the poll loop failed (restarting it)", exc_info=exc)
        self.poller = asyncio.create_task(
            self.rt.poll_due(
                stop=self.stopping,
                on_outcome=self._polled,
                recheck=self.rt.settings.daemon.tick.total_seconds(),
            )
        )

    async def _delivery_tick(self) -> None:
        if self.stopping.is_set():
            return
        try:
            while await self.rt.deliverer.run_once():
                if self.stopping.is_set():
                    return
        except Exception as exc:
            if self.rt.store.health.failed(exc) is None:  # a store fault: its health logs it
                log.exception("delivery round failed (will retry next tick)")


def load_checked(path: str | Path) -> CheckedConfig:
    return compile_settings(load_config(path))
