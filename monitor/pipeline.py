"""One feed, end to end: fetch, parse, drop seen entries, extract, match, commit to the outbox.

`Pipeline.poll(feed)` tells the whole story on one page (as Miniflux's RefreshFeed does): build
the request from the stored validators, fetch, stop if not modified or unchanged, parse in a
worker process, keep only entries this feed has not stored, extract each article page in a
worker process, group it into a story, match the rules, and commit the article with its
matches, alerts and deliveries in one transaction. Stages raise typed errors; this is the one
place that records a feed's failure. No scheduling here: the daemon and `monitor once` decide
when to call it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection

from monitor.config import SEVERITY_ORDER, FeedConfig, Settings
from monitor.errors import MonitorError
from monitor.extract import Extracted
from monitor.fetch import Fetcher
from monitor.models import Article, Entry, ParsedFeed
from monitor.notify.message import AlertMessage
from monitor.rules import Match, RuleSet
from monitor.schedule import (
    ADAPTIVE_WINDOW,
    adaptive_interval,
    next_poll_after_failure,
    next_poll_after_success,
)
from monitor.store import FeedState, Route, RuleHit, Store, enqueue
from monitor.store.articles import CommitResult
from monitor.store.feedstate import QuietSuccess, decode_skip, encode_skip
from monitor.stories import Fingerprint, StoryIndex
from monitor.workers import WorkerPool

log = logging.getLogger("monitor.pipeline")

#: How many article pages of one feed are fetched and extracted at once.
ARTICLE_CONCURRENCY = 4


@dataclass(slots=True)
class PollOutcome:
    feed: str
    status: str  # new | not_modified | unchanged | failed | lease_lost
    entries: int = 0
    new: int = 0
    alerts: int = 0
    error: str | None = None
    kinds: list[str] = field(default_factory=list)


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


def alert_message(article: Article, match: Match, *, now: float) -> AlertMessage:
    """The alert as channels will show it (the outbox fills in ids, sources and keys)."""
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
    return AlertMessage(
        kind="alert",
        idempotency_key="",
        alert_id=None,
        rule=match.rule,
        severity="medium",
        title=article.title or article.url,
        url=article.url or None,
        source=article.feed,
        published=article.published,
        snippet=snip.text,
        highlights=list(snip.highlights),
        story_id=None,
        sources=[],
        why=why,
        created_at=datetime.fromtimestamp(now, UTC),
    )


def health_message(feed: FeedState, event: str, now: float) -> AlertMessage:
    broken = event == "source.broken"
    since = (
        datetime.fromtimestamp(feed.failing_since, UTC).strftime("%Y-%m-%d %H:%M UTC")
        if feed.failing_since
        else ""
    )
    title = f"Feed broken: {feed.name}" if broken else f"Feed recovered: {feed.name}"
    detail = (
        f"{feed.url} has failed since {since}: [{feed.last_error_kind}] {feed.last_error}"
        if broken
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
        created_at=datetime.fromtimestamp(now, UTC),
        detail=detail,
    )


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
        # When a list (the daemon sets one while it polls), good polls that stored nothing are
        # queued here for `FeedRepo.record_successes` instead of one transaction each.
        self.quiet_successes: list[QuietSuccess] | None = None
        # Polls whose work is done but for their commit, which only waits for the writer
        # thread; `on_committing` (set by the daemon's poll loop) is told when one gets there,
        # so the loop can start another feed instead of idling the parse workers meanwhile.
        self.committing = 0
        self.on_committing: Callable[[], None] | None = None
        self.fetcher = fetcher
        self.workers = workers
        self.clock = clock
        self.configure(settings, ruleset)

    def configure(self, settings: Settings, ruleset: RuleSet) -> None:
        """Swap in a new config (reload). In-flight polls finish with the old one."""
        self.settings = settings
        self.ruleset = ruleset
        self.routes = build_routes(settings)
        # Routes of rules whose alerts can wait for more outlets (min_sources).
        self.waiting_routes = {n: r for n, r in self.routes.items() if r.min_sources}
        self.feed_configs: dict[str, FeedConfig] = {f.url: f for f in settings.feed_list}
        st = settings.stories
        self.stories = StoryIndex(
            window=st.window.total_seconds(),
            threshold=st.near_duplicate_threshold,
            num_perm=st.num_perm,
            shingle_size=st.shingle_size,
        )
        self.health_channels = [n for n, c in settings.channels.items() if c.health and c.enabled]

    # ------------------------------------------------------------------ one feed

    async def poll(self, feed: FeedState, owner: str) -> PollOutcome:
        cfg = self.feed_configs.get(feed.url)
        if cfg is None:  # removed from the config since it was leased
            await asyncio.to_thread(self.store.feeds.release, feed, owner)
            return PollOutcome(feed=feed.url, status="removed")
        started = self.clock()
        try:
            async with asyncio.timeout(self.settings.daemon.feed_lease.total_seconds() * 0.8):
                return await self._poll(feed, cfg, owner)
        except MonitorError as exc:
            return await self._failed(
                feed, owner, exc.kind, str(exc), getattr(exc, "retry_after", None)
            )
        except TimeoutError:
            return await self._failed(
                feed,
                owner,
                "timeout",
                f"poll took longer than {self.clock() - started:.0f} s",
                None,
            )
        except Exception as exc:  # a bug must not kill the daemon; record it on the feed
            log.exception("unexpected error polling %s", feed.url)
            return await self._failed(feed, owner, "internal", f"{type(exc).__name__}: {exc}", None)

    async def _poll(self, feed: FeedState, cfg: FeedConfig, owner: str) -> PollOutcome:
        fs = self.settings.fetch
        res = await self.fetcher.fetch(
            feed.fetch_url,
            etag=feed.etag,
            last_modified=feed.last_modified,
            max_bytes=fs.max_feed_bytes,
            allow_private=cfg.allow_private,
        )
        now = self.clock()
        if res.not_modified or (res.content_hash and res.content_hash == feed.content_hash):
            status = "not_modified" if res.not_modified else "unchanged"
            await self._succeeded(
                feed,
                owner,
                cfg,
                now,
                res.etag or feed.etag,
                res.last_modified or feed.last_modified,
                feed.content_hash,
                0,
                res.cache_max_age,
                None,
                res,
            )
            return PollOutcome(feed=feed.url, status=status)
        extract = self.settings.feed_extract(cfg)
        fingerprints: dict[int, Fingerprint] = {}
        if extract:
            parsed = await self.workers.parse_feed(
                res.body,
                url=res.final_url,
                content_type=res.content_type,
                timeout=fs.parse_timeout.total_seconds(),
            )
        else:
            parsed, prints = await self.workers.parse_feed_fingerprinted(
                res.body,
                url=res.final_url,
                content_type=res.content_type,
                timeout=fs.parse_timeout.total_seconds(),
                feed=feed.name,
                stories=self.stories.params,
            )
            fingerprints = {id(e): fp for e, fp in zip(parsed.entries, prints, strict=True)}
        if parsed.warning:
            log.info("feed %s parsed with a warning: %s", feed.url, parsed.warning)
        entries = _unique(parsed.entries)
        seen: set[str] = set()
        if extract or feed.entries_total:
            seen = await asyncio.to_thread(
                self.store.articles.seen_guids, feed.id, [e.key for e in entries]
            )
        # else nothing was stored from this feed yet (its first poll with entries, e.g. every
        # feed of a cold start): no seen-list to read. The commit checks again in its own
        # transaction, so an entry stored by a poll that crashed before it was recorded is
        # still stored once, and the counts below are what the commit stored.
        new = [e for e in entries if e.key not in seen]
        # Oldest first, so alerts arrive in the order the stories broke.
        new.sort(key=lambda e: e.published.timestamp() if e.published else float("inf"))
        outcome = PollOutcome(feed=feed.url, status="new", entries=len(entries), new=len(new))
        if extract:
            sem = asyncio.Semaphore(ARTICLE_CONCURRENCY)

            async def one(entry: Entry) -> int:
                async with sem:
                    return await self._process_entry(feed, cfg, entry, res.final_url)

            for n in await asyncio.gather(*(one(e) for e in new)):
                outcome.alerts += n
        elif new:
            # Nothing to fetch per entry: commit the whole poll in one transaction, one fsync
            # instead of one per entry (a crash still loses nothing: the entries stay new).
            now = self.clock()
            items = [
                self._prepare(self._article(feed, e), None, now, fingerprints.get(id(e)))
                for e in new
            ]
            record = None
            if not self._adaptive(cfg):
                # The poll is recorded in the same transaction as its entries: one commit per
                # cold feed instead of two. (Adaptive polling counts the feed's stored entries
                # to pick the next poll time, so it must run after the commit: not folded.)
                plan = await self._plan(feed, cfg, now, res.cache_max_age, parsed, res)
                record = self._recorder(
                    feed, owner, plan, now, res.etag, res.last_modified, res.content_hash
                )
            # Committed with the other polls' writes queued meanwhile: one fsync for all.
            self.committing += 1
            if self.on_committing is not None:
                self.on_committing()
            try:
                results = await self.store.writer.run(
                    functools.partial(
                        self.store.articles.commit_articles_in,
                        feed_id=feed.id,
                        items=items,
                        stories=self.stories,
                        now=now,
                        routes=self.waiting_routes,
                        after=record,
                    )
                )
            finally:
                self.committing -= 1
            outcome.new = sum(1 for r in results if r.article_id is not None)
            for (article, *_), result in zip(items, results, strict=True):
                outcome.alerts += _log_alerts(article, result)
            if record is not None:
                if not record.recorded:
                    log.warning("lease on %s was lost before its poll finished", feed.url)
                return outcome
        await self._succeeded(
            feed,
            owner,
            cfg,
            self.clock(),
            res.etag,
            res.last_modified,
            res.content_hash,
            outcome.new,
            res.cache_max_age,
            parsed,
            res,
        )
        return outcome

    @staticmethod
    def _article(feed: FeedState, entry: Entry) -> Article:
        return entry.article(feed.name)

    def _prepare(
        self,
        article: Article,
        extract_error: str | None,
        now: float,
        fingerprint: Fingerprint | None = None,
    ) -> tuple[Article, Fingerprint, list[RuleHit], str | None]:
        """Match the rules and fingerprint the story (unless a worker did): everything a commit
        needs."""
        if not article.body:
            article.body = ""
        fields = article.fields()
        hits: list[RuleHit] = []
        for match in self.ruleset.match(fields):
            route = self.routes.get(match.rule)
            if route is None:
                continue
            msg = alert_message(article, match, now=now).to_dict()
            explanation = msg["why"]
            hits.append(RuleHit(route=route, explanation=explanation, message=msg))
        if fingerprint is None:
            fingerprint = self.stories.fingerprint(article)
        return article, fingerprint, hits, extract_error

    async def _process_entry(
        self, feed: FeedState, cfg: FeedConfig, entry: Entry, feed_url: str
    ) -> int:
        article = self._article(feed, entry)
        extract_error: str | None = None
        if self.settings.feed_extract(cfg) and entry.link:
            try:
                extracted = await self._extract(entry.link, cfg, feed_url)
                if extracted is not None:
                    article.body = extracted.text
                    article.canonical_url = extracted.canonical_url
                    if not article.title and extracted.title:
                        article.title = extracted.title
                    if not article.authors and extracted.author:
                        article.authors = [extracted.author]
                else:
                    extract_error = "no article text found on the page"
            except MonitorError as exc:
                # The entry is still matched on its feed summary; the reason is kept.
                extract_error = f"[{exc.kind}] {exc}"
                log.info("article %s: %s", entry.link, extract_error)
        now = self.clock()
        article, fingerprint, hits, extract_error = self._prepare(article, extract_error, now)
        result = await asyncio.to_thread(
            self.store.articles.commit_article,
            feed_id=feed.id,
            article=article,
            fingerprint=fingerprint,
            hits=hits,
            stories=self.stories,
            now=now,
            extract_error=extract_error,
            routes=self.waiting_routes,
        )
        return _log_alerts(article, result)

    async def _extract(self, link: str, cfg: FeedConfig, feed_url: str) -> Extracted | None:
        fs = self.settings.fetch
        # A self-hosted feed (allow_private) may link to pages on its own host; any other
        # private address is refused by the fetcher's SSRF guard.
        same_host = urlsplit(link).hostname == urlsplit(feed_url).hostname
        page = await self.fetcher.fetch(
            link,
            max_bytes=fs.max_page_bytes,
            allow_private=cfg.allow_private and same_host,
            accept="text/html,application/xhtml+xml;q=0.9,*/*;q=0.5",
        )
        return await self.workers.extract(
            page.body, url=page.final_url, timeout=fs.extract_timeout.total_seconds()
        )

    # ------------------------------------------------------------------ bookkeeping

    def _adaptive(self, cfg: FeedConfig) -> bool:
        return self.settings.defaults.adaptive and cfg.interval is None

    async def _plan(
        self,
        feed: FeedState,
        cfg: FeedConfig,
        now: float,
        max_age: float | None,
        parsed: ParsedFeed | None,
        res: Any,
    ) -> _SuccessPlan:
        """When to poll next, the server's lower bound and any feed move, after a good poll."""
        d = self.settings.defaults
        ttl = parsed.ttl_minutes * 60.0 if parsed and parsed.ttl_minutes else None
        server_min = max([x for x in (ttl, max_age) if x] or [0.0]) or None
        if parsed is None:
            # Unchanged body (304 or same hash): its ttl still holds, so keep the stored bound.
            server_min = max(server_min or 0.0, feed.min_interval or 0.0) or None
        if parsed is not None:
            skip_hours, skip_days = parsed.skip_hours, parsed.skip_days
            skip = encode_skip(skip_hours, skip_days)
            if skip != feed.skip:  # rare: the first parse, or the feed changed its hints
                await asyncio.to_thread(self.store.feeds.set_skip, feed.id, skip)
        else:
            # 304 or the same body: the hints of the last full body still hold.
            skip_hours, skip_days = decode_skip(feed.skip)
        interval = self.settings.feed_interval(cfg).total_seconds()
        if self._adaptive(cfg):
            # Busier feeds more often: one poll per entry the feed published in the window.
            recent = await asyncio.to_thread(
                self.store.feeds.recent_entries, feed.id, now - ADAPTIVE_WINDOW
            )
            interval = adaptive_interval(
                recent,
                window=ADAPTIVE_WINDOW,
                min_interval=d.min_interval.total_seconds(),
                max_interval=d.max_interval.total_seconds(),
            )
        next_at = next_poll_after_success(
            now,
            interval=interval,
            min_interval=d.min_interval.total_seconds(),
            max_interval=d.max_interval.total_seconds(),
            server_min=(server_min,),
            skip_hours=skip_hours,
            skip_days=skip_days,
        )
        redirect = getattr(res, "permanent_redirect", None)
        fetch_url = None
        if redirect and redirect == feed.redirect_target and feed.redirect_count + 1 >= 3:
            # A permanent redirect seen repeatedly: poll the new address from now on.
            fetch_url = redirect
            log.info("feed %s moved permanently to %s", feed.url, redirect)
        redirect_target = None if fetch_url else redirect
        return _SuccessPlan(next_at, server_min, fetch_url, redirect_target)

    def _recorder(
        self,
        feed: FeedState,
        owner: str,
        plan: _SuccessPlan,
        now: float,
        etag: str | None,
        last_modified: str | None,
        content_hash: str | None,
    ) -> _Recorder:
        hook = self._health_hook(now)

        def record(conn: Connection, new_entries: int) -> bool:
            return self.store.feeds.record_success_in(
                conn,
                feed,
                owner,
                now=now,
                next_poll_at=plan.next_at,
                etag=etag,
                last_modified=last_modified,
                content_hash=content_hash,
                new_entries=new_entries,
                fetch_url=plan.fetch_url,
                redirect_target=plan.redirect_target,
                min_interval=plan.server_min,
                on_health=hook,
            )

        return _Recorder(record)

    async def _succeeded(
        self,
        feed: FeedState,
        owner: str,
        cfg: FeedConfig,
        now: float,
        etag: str | None,
        last_modified: str | None,
        content_hash: str | None,
        new_entries: int,
        max_age: float | None,
        parsed: ParsedFeed | None,
        res: Any,
    ) -> None:
        plan = await self._plan(feed, cfg, now, max_age, parsed, res)
        next_at, server_min = plan.next_at, plan.server_min
        fetch_url, redirect_target = plan.fetch_url, plan.redirect_target
        if (
            self.quiet_successes is not None
            and new_entries == 0
            and fetch_url is None
            and not feed.broken_reported
        ):
            # Nothing stored and no health change: the daemon writes this with other such
            # polls in one transaction (see QuietSuccess for why losing it is harmless).
            self.quiet_successes.append(
                QuietSuccess(
                    feed_id=feed.id,
                    owner=owner,
                    now=now,
                    next_poll_at=next_at,
                    etag=etag,
                    last_modified=last_modified,
                    content_hash=content_hash,
                    min_interval=server_min,
                    redirect_target=redirect_target,
                    redirect_same=redirect_target is not None
                    and redirect_target == feed.redirect_target,
                )
            )
            return
        ok = await asyncio.to_thread(
            self.store.feeds.record_success,
            feed,
            owner,
            now=now,
            next_poll_at=next_at,
            etag=etag,
            last_modified=last_modified,
            content_hash=content_hash,
            new_entries=new_entries,
            fetch_url=fetch_url,
            redirect_target=redirect_target,
            min_interval=server_min,
            on_health=self._health_hook(now),
        )
        if not ok:
            log.warning("lease on %s was lost before its poll finished", feed.url)

    async def _failed(
        self, feed: FeedState, owner: str, kind: str, error: str, retry_after: float | None
    ) -> PollOutcome:
        now = self.clock()
        fs = self.settings.fetch
        next_at = next_poll_after_failure(
            now,
            failures=feed.consecutive_failures + 1,
            base=fs.backoff_base.total_seconds(),
            cap=fs.backoff_max.total_seconds(),
            retry_after=retry_after,
        )
        log.warning(
            "feed %s failed [%s]: %s (next try in %.0f s)", feed.url, kind, error, next_at - now
        )
        await asyncio.to_thread(
            self.store.feeds.record_failure,
            feed,
            owner,
            now=now,
            next_poll_at=next_at,
            kind=kind,
            error=error,
            broken_after=fs.broken_after.total_seconds(),
            on_health=self._health_hook(now),
        )
        if retry_after is not None and fs.retry_after_scope == "host":
            # Configured for services whose limit is per site (one Retry-After for all its
            # feeds); by default only the feed that was told to wait waits.
            host = urlsplit(feed.fetch_url).hostname or ""
            await asyncio.to_thread(self.store.feeds.defer_host, host, until=next_at)
        return PollOutcome(feed=feed.url, status="failed", error=error, kinds=[kind])

    def _health_hook(self, now: float) -> Callable[[Connection, FeedState, str], None]:
        channels = list(self.health_channels)

        def hook(conn: Connection, feed: FeedState, event: str) -> None:
            msg = health_message(feed, event, now).to_dict()
            stamp = int(feed.failing_since or now)
            for ch in channels:
                key = f"health:{feed.id}:{stamp}:{event}:{ch}"
                enqueue(
                    conn,
                    channel=ch,
                    kind=event,
                    key=key,
                    payload=dict(msg, idempotency_key=key),
                    now=now,
                )
            log.warning("%s: %s", event, feed.url)

        return hook


@dataclass(slots=True)
class _SuccessPlan:
    next_at: float
    server_min: float | None
    fetch_url: str | None  # the feed moved here (a repeated permanent redirect)
    redirect_target: str | None  # a permanent redirect seen, not yet followed


class _Recorder:
    """Records a poll inside the commit of its entries; remembers whether the lease held."""

    def __init__(self, record: Callable[[Connection, int], bool]) -> None:
        self._record = record
        self.recorded = False

    def __call__(self, conn: Connection, stored: int) -> None:
        self.recorded = self._record(conn, stored)


def _log_alerts(article: Article, result: CommitResult) -> int:
    if result.alerts:
        log.info("alert %s: %s (%s)", ",".join(result.alerts), article.title, article.url)
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
