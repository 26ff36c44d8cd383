"""One feed, end to end: fetch, parse, drop seen entries, extract, match, then commit.

`Pipeline.poll(feed)` tells the whole story on one page (as Miniflux's RefreshFeed does): build
the request from the stored validators, fetch, stop if not modified or unchanged, parse in a
worker process, keep only entries this feed has not stored, extract each article page in a
worker process, match the rules (each match one `Alert`), fingerprint the story, and decide the
feed's update (`monitor.polling`). It writes nothing: `Pipeline.commit` hands the `PollResult`
to the store's one commit path (`monitor.store.polls`). Stages raise typed errors; this is the
one place that turns them into a feed's failure. No scheduling here: the poll loop decides when
to call it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from monitor import secrets
from monitor.alerting import Alert, Route, build_routes
from monitor.config import FeedConfig, Settings
from monitor.errors import MonitorError
from monitor.extract import Extracted
from monitor.fetch import HTML_ACCEPT, Fetcher, FetchResult
from monitor.models import Article, Entry, FeedState, ParsedFeed
from monitor.notify.message import AlertMessage
from monitor.polling import (
    Failure,
    FeedHints,
    FeedUpdate,
    FetchSummary,
    PollPolicy,
    plan_after_failure,
    plan_next_poll,
)
from monitor.rules import Match, RuleSet
from monitor.rules.budget import poll_budget, run_matching
from monitor.schedule import ADAPTIVE_WINDOW
from monitor.stages import NO_STAGES, Stages
from monitor.store import CommitResult, Enqueue, NewArticle, PollResult, RuleHit, Store
from monitor.store.health import cause_of, classify
from monitor.store.polls import Notice
from monitor.stories import Fingerprint, StoryIndex
from monitor.workers import WorkerPool

log = logging.getLogger("monitor.pipeline")

#: How many article pages of one feed are fetched and extracted at once.
ARTICLE_CONCURRENCY = 4
#: Share of the feed's lease, from the poll's start, until which its pages are extracted (the
#: whole poll may take 0.8 of it).
EXTRACT_BUDGET = 0.6
#: Article pages the daemon holds at once (being fetched, or fetched and waiting for a worker
#: process), per worker. Pages arrive faster than two workers extract them: unbounded, 128
#: pages (33 MB of bodies) waited in the extraction benchmark. 16 a worker keep it busy while
#: pages take up to ~0.4 s to arrive (16 in 0.4 s, against ~25 ms of its CPU a page); the
#: per-feed (`ARTICLE_CONCURRENCY`) and per-host limits bind before it otherwise.
PAGES_PER_WORKER = 16


@dataclass(slots=True)
class PollOutcome:
    feed: str
    status: str  # new | not_modified | unchanged | failed | lease_lost | deferred
    entries: int = 0
    new: int = 0
    alerts: int = 0
    error: str | None = None
    kinds: list[str] = field(default_factory=list)
    http_status: int | None = None  # the feed's answer: 200, 304, ... (None: no answer)
    seconds: dict[str, float] = field(default_factory=dict)  # fetch, parse, articles, commit
    name: str = ""  # the feed's display name (set on failures, for their messages)

    def describe(self) -> str:
        """What the poll did, in one line (the DEBUG log of each poll)."""
        answer = f"HTTP {self.http_status}" if self.http_status is not None else "no answer"
        if self.status == "not_modified":
            what = f"{answer} not modified"
        elif self.status == "unchanged":
            what = f"{answer}, body unchanged since the last poll"
        elif self.status == "new":
            what = (
                f"{answer}, {self.entries} entries, {self.new} new,"
                f" {self.alerts} alert{'' if self.alerts == 1 else 's'}"
            )
        elif self.status == "failed":
            what = f"failed [{', '.join(self.kinds)}]: {self.error}"
        else:
            what = self.status.replace("_", " ")
        times = ", ".join(f"{stage} {sec * 1000:.0f} ms" for stage, sec in self.seconds.items())
        return f"{what} ({times})" if times else what


def _deferred(feed: FeedState, exc: BaseException) -> PollOutcome:
    """A poll cut short by a store condition: not the feed's failure (its health is kept);
    its lease is given back when the store accepts writes again (`monitor.poll_loop`)."""
    return PollOutcome(feed.url, "deferred", error=f"store {classify(exc)}: {cause_of(exc)}")


def alert_of(article: Article, match: Match, route: Route, *, now: float) -> Alert:
    """The alert a rule's match on an article makes: built once, stored once."""
    fields = article.fields()
    snip = match.snippet(fields)
    why = [
        {
            "field": h.field,
            "leaf": h.leaf,
            "text": fields.get(h.field, "")[h.start : h.end],
            "start": h.start,
            "end": h.end,
        }
        for h in match.hits[:50]
    ]
    if match.scored is not None:  # a trained model took part: say so, with its reasons
        why.append(
            {
                "field": "model",
                "leaf": "score",
                "text": match.scored.describe(),
                "start": 0,
                "end": 0,
                **match.scored.to_dict(),
            }
        )
    return Alert(
        rule=match.rule,
        severity=route.severity,
        title=article.title or article.url,
        url=article.url or None,
        source=article.feed,
        published=article.published,
        snippet=snip.text,
        highlights=list(snip.highlights),
        why=why,
        created_at=datetime.fromtimestamp(now, UTC),
        enclosures=[e.to_dict() for e in article.enclosures],
    )


def health_message(feed: FeedState, update: FeedUpdate) -> AlertMessage:
    """The alert a feed's health event sends to the health channels."""
    broken = update.health == "source.broken"
    failing_since = update.failing_since if update.failure else feed.failing_since
    since = (
        datetime.fromtimestamp(failing_since, UTC).strftime("%Y-%m-%d %H:%M UTC")
        if failing_since
        else ""
    )
    title = f"Feed broken: {feed.name}" if broken else f"Feed recovered: {feed.name}"
    failure = update.failure
    detail = (
        f"{feed.url} has failed since {since}: [{failure.kind}] {failure.error}"
        if broken and failure is not None
        else f"{feed.url} is being polled successfully again."
    )
    return AlertMessage(
        kind="source.broken" if broken else "source.recovered",
        idempotency_key="",
        alert_id=None,
        rule=None,
        severity="high" if broken else "low",
        title=title,
        url=feed.url,
        source=feed.name,
        published=None,
        snippet=detail,
        highlights=[],
        story_id=None,
        sources=[],
        why=[],
        created_at=datetime.fromtimestamp(update.now, UTC),
        detail=detail,
    )


@dataclass(slots=True)
class Polled:
    """A poll done but for its commit: what to write, and the outcome so far."""

    result: PollResult
    outcome: PollOutcome


class _Laps:
    """Stage durations of one poll: `lap("fetch")` records the time since the last lap."""

    def __init__(self, seconds: dict[str, float] | None = None) -> None:
        self.seconds = seconds if seconds is not None else {}
        self._last = time.perf_counter()

    def __call__(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = now - self._last
        self._last = now


def poll_policy(settings: Settings, cfg: FeedConfig) -> PollPolicy:
    """A feed's polling policy, resolved from its config and the defaults."""
    d, fs = settings.defaults, settings.fetch
    return PollPolicy(
        interval=settings.feed_interval(cfg).total_seconds(),
        min_interval=d.min_interval.total_seconds(),
        max_interval=d.max_interval.total_seconds(),
        adaptive=cfg.adaptive,  # resolved at load: defaults.adaptive unless the feed says
        backoff_base=fs.backoff_base.total_seconds(),
        backoff_max=fs.backoff_max.total_seconds(),
        broken_after=fs.broken_after.total_seconds(),
        host_wide_retry_after=fs.retry_after_scope == "host",
    )


@dataclass(frozen=True, slots=True)
class _Feed:
    """A configured feed, resolved once per configuration (not on every poll)."""

    cfg: FeedConfig
    extract: bool
    policy: PollPolicy


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        fetcher: Fetcher,
        workers: WorkerPool,
        ruleset: RuleSet,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.fetcher = fetcher
        self.workers = workers
        self.clock = clock
        self.stages: Stages = NO_STAGES  # /metrics installs its recorder here
        # One bound per event loop (a semaphore belongs to the loop it first waits on).
        self._page_slots: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, asyncio.Semaphore
        ] = weakref.WeakKeyDictionary()
        self.configure(settings, ruleset)

    def configure(self, settings: Settings, ruleset: RuleSet) -> None:
        """Swap in a new config (reload). In-flight polls finish with the old one."""
        self.settings = settings
        self.ruleset = ruleset
        self.routes = build_routes(settings)
        # Routes of rules whose alerts can wait for more outlets (min_sources).
        self.waiting_routes = {n: r for n, r in self.routes.items() if r.min_sources}
        self.feeds = {
            f.url: _Feed(f, settings.feed_extract(f), poll_policy(settings, f))
            for f in settings.feed_list
        }
        self.stories = StoryIndex.configured(settings.stories)
        self.health_channels = [n for n, c in settings.channels.items() if c.health and c.enabled]

    # ------------------------------------------------------------------ one feed

    async def poll(self, feed: FeedState, owner: str) -> Polled:
        """Poll one leased feed; errors become its failure. Nothing is written: the caller
        commits the result (`commit`)."""
        conf = self.feeds.get(feed.url)
        if conf is None:  # removed from the config since it was leased
            return Polled(PollResult(feed, owner, None), PollOutcome(feed.url, "removed"))
        started = self.clock()
        begun = time.perf_counter()
        try:
            async with asyncio.timeout(self.settings.daemon.feed_lease.total_seconds() * 0.8):
                return await self._poll(feed, conf, owner)
        except MonitorError as exc:
            failure = Failure(exc.kind, str(exc), getattr(exc, "retry_after", None))
        except TimeoutError:
            elapsed = self.clock() - started
            failure = Failure("timeout", f"poll took longer than {elapsed:.0f} s")
        except Exception as exc:  # a bug must not kill the daemon; record it on the feed
            if self.store.health.failed(exc) is not None:  # the store's fault, not the feed's
                return Polled(PollResult(feed, owner, None), _deferred(feed, exc))
            log.exception("unexpected error polling %s", feed.url)
            failure = Failure("internal", secrets.redact(f"{type(exc).__name__}: {exc}"))
        failed = self._failed(feed, conf, owner, failure)
        failed.outcome.seconds["poll"] = time.perf_counter() - begun
        return failed

    async def _poll(self, feed: FeedState, conf: _Feed, owner: str) -> Polled:
        lease = self.settings.daemon.feed_lease.total_seconds()
        deadline = asyncio.get_running_loop().time() + lease * EXTRACT_BUDGET
        poll_budget(self.settings.daemon.regex_budget_per_poll.total_seconds())  # this task's
        lap = _Laps()
        with self.stages.timed("fetch"):
            res = await self.fetcher.fetch(
                secrets.expand(feed.fetch_url),
                etag=feed.etag,
                last_modified=feed.last_modified,
                max_bytes=self.settings.fetch.max_feed_bytes,
                private_origin=conf.cfg.url if conf.cfg.allow_private else None,
            )
        digest = res.content_hash  # (computed on each access)
        fetched = FetchSummary(
            changed=not res.not_modified and digest != feed.content_hash,
            etag=res.etag,
            last_modified=res.last_modified,
            content_hash=digest,
            permanent_redirect=_redacted(res.permanent_redirect),
            not_modified=res.not_modified,
        )
        lap("fetch")
        if not fetched.changed:
            status = "not_modified" if res.not_modified else "unchanged"
            update = await self._plan(feed, conf, fetched, FeedHints.of(None, res.cache_max_age))
            outcome = PollOutcome(feed.url, status, http_status=res.status, seconds=lap.seconds)
            return self._done(feed, owner, update, outcome)
        parsed, prints = await self._parse(feed, conf, res)
        lap("parse")
        entries = _unique(parsed.entries)
        new = await self._unseen(feed, conf, entries)
        outcome = PollOutcome(
            feed.url,
            "new",
            entries=len(entries),
            new=len(new),
            http_status=res.status,
            seconds=lap.seconds,
        )
        articles = await self._articles(feed, conf, new, res.final_url, prints, deadline)
        lap("articles")  # extraction (when on), stories and rules
        if len(articles) < len(new):  # pages left for the next poll: it must fetch the feed again
            fetched = FetchSummary(
                changed=True, permanent_redirect=_redacted(res.permanent_redirect)
            )
        hints = FeedHints.of(parsed, res.cache_max_age)
        update = await self._plan(feed, conf, fetched, hints, new)
        return self._done(feed, owner, update, outcome, articles)

    async def commit(self, polled: Polled) -> PollOutcome:
        """Write a poll's result (one piece of the group commit) and log what it did."""
        result, outcome = polled.result, polled.outcome
        lap = _Laps(outcome.seconds)
        try:
            committed = await self.store.commit(result)
        except Exception as exc:  # e.g. the disk is full: nothing of the poll was stored
            if classify(exc) is not None:  # a store condition (the writer reported it)
                return _deferred(result.feed, exc)  # the poll loop gives the feed back
            log.exception("committing the poll of %s failed", result.feed.url)
            return await self._commit_failed(result, exc)
        lap("commit")
        self.stages.committed(result, committed.results)
        if not committed.recorded:
            log.warning("lease on %s was lost before its poll finished", result.feed.url)
        elif result.update is not None and result.update.health:
            log.warning("%s: %s", result.update.health, result.feed.url)
        if outcome.status == "new":
            outcome.new = committed.stored
        for new, res in zip(result.articles, committed.results, strict=True):
            outcome.alerts += _log_alerts(new.article, res)
        if outcome.status != "failed" and log.isEnabledFor(logging.DEBUG):  # failures: WARNING
            name = result.feed.name or result.feed.url
            log.debug("poll %s: %s", name, outcome.describe(), extra={"feed": result.feed.url})
        return outcome

    async def _commit_failed(self, result: PollResult, exc: Exception) -> PollOutcome:
        """Record the failed commit as the feed's failure (its entries stay new)."""
        feed, conf = result.feed, self.feeds.get(result.feed.url)
        error = secrets.redact(f"{type(exc).__name__}: {exc}")
        if conf is None or result.update is None or not result.update.ok:
            return PollOutcome(feed.url, "failed", error=error, kinds=["internal"])
        failed = self._failed(feed, conf, result.owner, Failure("internal", error))
        try:
            await self.store.commit(failed.result)
        except Exception as again:
            if classify(again) is not None:  # the poll loop gives the feed back
                return _deferred(feed, again)
            log.exception("recording the failure of %s failed too", feed.url)  # lease expires
        return failed.outcome

    # ------------------------------------------------------------------ stages

    async def _parse(
        self, feed: FeedState, conf: _Feed, res: FetchResult
    ) -> tuple[ParsedFeed, dict[int, Fingerprint]]:
        """Parse in a worker process; without extraction the worker fingerprints the stories
        too (their text is all there is)."""
        timeout = self.settings.fetch.parse_timeout.total_seconds()
        prints: dict[int, Fingerprint] = {}
        if conf.extract:
            with self.stages.timed("parse"):
                parsed = await self.workers.parse_feed(
                    res.body, url=res.final_url, content_type=res.content_type, timeout=timeout
                )
        else:
            with self.stages.timed("parse"):
                parsed, fps = await self.workers.parse_feed_fingerprinted(
                    res.body,
                    url=res.final_url,
                    content_type=res.content_type,
                    timeout=timeout,
                    feed=feed.name,
                    stories=self.stories.params,
                )
            prints = {id(e): fp for e, fp in zip(parsed.entries, fps, strict=True)}
        if parsed.warning:
            log.info("feed %s parsed with a warning: %s", feed.url, parsed.warning)
        return parsed, prints

    async def _unseen(self, feed: FeedState, conf: _Feed, entries: list[Entry]) -> list[Entry]:
        """The entries this feed has not stored, oldest first (alerts arrive in the order the
        stories broke)."""
        seen: set[str] = set()
        if conf.extract or feed.entries_total:
            seen = await asyncio.to_thread(
                self.store.articles.seen_guids, feed.id, [e.key for e in entries]
            )
        # else nothing was stored from this feed yet (its first poll with entries, e.g. every
        # feed of a cold start): no seen-list to read. The commit checks again in its own
        # transaction, so an entry stored by a poll that crashed before it was recorded is
        # still stored once, and the counts are what the commit stored.
        new = [e for e in entries if e.key not in seen]
        new.sort(key=lambda e: e.published.timestamp() if e.published else float("inf"))
        return new

    async def _articles(
        self,
        feed: FeedState,
        conf: _Feed,
        new: list[Entry],
        feed_url: str,
        prints: dict[int, Fingerprint],
        deadline: float,
    ) -> list[NewArticle]:
        """Each new entry as an article (its page extracted when configured), matched;
        extraction stops at `deadline` (event-loop time)."""
        if not conf.extract:
            now = self.clock()
            return await run_matching(  # matched off the loop: regexes release the GIL
                lambda: [
                    self._prepare(e.article(feed.name), None, now, prints.get(id(e))) for e in new
                ]
            )
        sem = asyncio.Semaphore(ARTICLE_CONCURRENCY)

        async def one(entry: Entry) -> NewArticle:
            async with sem:
                article, error = await self._extracted(feed, conf, entry, feed_url)
                # Matched in a thread: regexes release the GIL, so a slow rule never stalls
                # the loop.
                return await run_matching(self._prepare, article, error, self.clock())

        tasks = [asyncio.create_task(one(e)) for e in new]
        # The poll commits once, at its end: pages still being extracted when the budget is
        # spent are left for the next poll (they are not stored, so they stay new), and what
        # was extracted is committed now, so a feed of slow pages still makes progress.
        budget = max(0.0, deadline - asyncio.get_running_loop().time())
        done, pending = await asyncio.wait(tasks, timeout=budget) if tasks else (set(), set())
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            log.info("feed %s: %d pages left for the next poll", feed.url, len(pending))
        return [task.result() for task in tasks if task in done]

    async def _extracted(
        self, feed: FeedState, conf: _Feed, entry: Entry, feed_url: str
    ) -> tuple[Article, str | None]:
        """The entry's article with its page's text; on failure the feed's summary stays the
        text to match, and the reason is kept."""
        article = entry.article(feed.name)
        if not entry.link:
            return article, None
        try:
            extracted = await self._extract(entry.link, conf.cfg, feed_url)
        except MonitorError as exc:
            error = f"[{exc.kind}] {exc}"
            log.info("article %s: %s", entry.link, error)
            return article, error
        if extracted is None:
            return article, "no article text found on the page"
        article.body = extracted.text
        article.canonical_url = extracted.canonical_url
        if not article.title and extracted.title:
            article.title = extracted.title
        if not article.authors and extracted.author:
            article.authors = [extracted.author]
        return article, None

    def _prepare(
        self,
        article: Article,
        extract_error: str | None,
        now: float,
        fingerprint: Fingerprint | None = None,
    ) -> NewArticle:
        """Match the rules and fingerprint the story (unless a worker did): everything a commit
        needs."""
        if not article.body:
            article.body = ""
        fields = article.fields()
        hits: list[RuleHit] = []
        budget = self.settings.daemon.regex_budget.total_seconds()
        with self.stages.timed("match"):
            matches = self.ruleset.match(fields, budget=budget)
        for match in matches:
            route = self.routes.get(match.rule)
            if route is None:
                continue
            hits.append(RuleHit(route, alert_of(article, match, route, now=now)))
        if hits:
            self.stages.matched(hits)
        if fingerprint is None:
            fingerprint = self.stories.fingerprint(article)
        return NewArticle(article, fingerprint, hits, extract_error)

    async def _extract(self, link: str, cfg: FeedConfig, feed_url: str) -> Extracted | None:
        fs = self.settings.fetch
        async with self._pages():
            # A self-hosted feed (allow_private) may link to pages on its own origin; the
            # fetcher decides per hop, so any other private address is refused by its guard.
            with self.stages.timed("fetch"):
                page = await self.fetcher.fetch(
                    link,
                    max_bytes=fs.max_page_bytes,
                    private_origin=cfg.url if cfg.allow_private else None,
                    accept=HTML_ACCEPT,
                )
            with self.stages.timed("extract"):
                return await self.workers.extract(
                    page.body, url=page.final_url, timeout=fs.extract_timeout.total_seconds()
                )

    def _pages(self) -> asyncio.Semaphore:
        """This event loop's bound on the article pages in hand (`PAGES_PER_WORKER`)."""
        loop = asyncio.get_running_loop()
        slots = self._page_slots.get(loop)
        if slots is None:
            slots = asyncio.Semaphore(PAGES_PER_WORKER * self.settings.fetch.workers)
            self._page_slots[loop] = slots
        return slots

    # ------------------------------------------------------------------ the feed's update

    async def _plan(
        self,
        feed: FeedState,
        conf: _Feed,
        fetched: FetchSummary,
        hints: FeedHints,
        new: Sequence[Entry] = (),
    ) -> FeedUpdate:
        """The feed's update after a good poll (decided by `plan_next_poll`)."""
        now = self.clock()
        recent = 0
        if conf.policy.adaptive:
            since = now - ADAPTIVE_WINDOW
            stored = await asyncio.to_thread(self.store.feeds.recent_entries, feed.id, since)
            recent = stored + sum(
                1 for e in new if e.published is None or e.published.timestamp() >= since
            )
        update = plan_next_poll(feed, fetched, hints, conf.policy, now, recent_entries=recent)
        if update.fetch_url:
            log.info("feed %s moved permanently to %s", feed.url, update.fetch_url)
        return update

    def _done(
        self,
        feed: FeedState,
        owner: str,
        update: FeedUpdate,
        outcome: PollOutcome,
        articles: Sequence[NewArticle] = (),
    ) -> Polled:
        result = PollResult(
            feed,
            owner,
            update,
            articles=articles,
            stories=self.stories,
            routes=self.waiting_routes,
            notices=self._notices(feed, update),
        )
        return Polled(result, outcome)

    def _failed(self, feed: FeedState, conf: _Feed, owner: str, failure: Failure) -> Polled:
        now = self.clock()
        host = urlsplit(feed.fetch_url).hostname or ""
        update = plan_after_failure(feed, failure, conf.policy, now, host=host)
        log.warning(
            "feed %s failed [%s]: %s (next try in %.0f s)",
            failed_feed(feed.name, feed.url, failure.error),
            failure.kind,
            failure.error,
            update.next_poll_at - now,
            extra={"feed": feed.url},
        )
        outcome = PollOutcome(
            feed.url, "failed", error=failure.error, kinds=[failure.kind], name=feed.name
        )
        return self._done(feed, owner, update, outcome)

    def _notices(self, feed: FeedState, update: FeedUpdate) -> list[Notice]:
        """The health channels' deliveries of the update's health event, if any."""
        if update.health is None:
            return []
        msg = health_message(feed, update).to_dict()
        since = update.failing_since if update.failure else feed.failing_since
        stamp = int(since or update.now)
        notices = []
        for ch in self.health_channels:
            key = f"health:{feed.id}:{stamp}:{update.health}:{ch}"
            to = Enqueue(channel=ch, kind=update.health, key=key)
            notices.append(Notice(to, dict(msg, idempotency_key=key)))
        return notices


def _log_alerts(article: Article, result: CommitResult) -> int:
    if result.alerts:
        rules = ",".join(result.alerts)
        log.info("alert %s: %s (%s)", rules, article.title, article.url, extra={"rule": rules})
    return len(result.alerts)


def _unique(entries: Sequence[Entry]) -> list[Entry]:
    """Drop repeated entries within one document (same key): feeds do repeat items."""
    seen: set[str] = set()
    out: list[Entry] = []
    for e in entries:
        if e.key not in seen:
            seen.add(e.key)
            out.append(e)
    return out


def _redacted(url: str | None) -> str | None:
    """A redirect target as stored and shown: any `${VAR}` value in it masked."""
    return secrets.redact(url) if url else None


def failed_feed(name: str, url: str, error: str) -> str:
    """How a failure message names its feed: by name, and by URL only when the error does not
    already show it (fetch errors start with the URL they were about)."""
    return name if url in error or not url else f"{name} ({url})"
