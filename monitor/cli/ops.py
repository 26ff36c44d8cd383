"""The store commands: status, deliveries (`check`, `once`, `run` and `backtest` are in
monitor.cli.check, monitor.cli.cycle and monitor.cli.backtest, so that a command loads only what
it uses)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import defaultdict
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from monitor.cli.timefmt import iso, iso_times
from monitor.config import load_config
from monitor.errors import MonitorError
from monitor.models import FeedState
from monitor.store import Store
from monitor.store import schema as s
from monitor.store.engine import read_tx
from monitor.store.health import StoreCondition, probe
from monitor.store.retention import StoreSize, store_size

log = logging.getLogger("monitor.cli")


def _store(path: str) -> tuple[Store, Any]:
    settings = load_config(path)
    return Store(settings.database), settings


def _age(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    d = now - ts
    if d < 0:
        return f"in {_span(-d)}"
    return f"{_span(d)} ago"


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def status(path: str, *, fmt: str = "text") -> int:
    store, _settings = _store(path)
    now = time.time()
    try:
        feeds = store.feeds.all()
        queue = store.outbox.stats(now)
        alerts, members = _recent_alerts(store)
        condition = probe(store.engine)  # writable, read-only, locked...
        size = store_size(store.engine)
    finally:
        store.close()
    sources = {k: len({m["feed"] for m in v}) for k, v in members.items()}
    slow_rules = None
    if _settings.daemon.health_listen:  # from a running daemon (no rule compiler otherwise)
        from monitor.rules.budget import counts_from_health

        slow_rules = counts_from_health(_settings.daemon.health_listen)
    if fmt == "json":
        data = _status_json(feeds, queue, alerts, members, sources)
        data["regex_budget_exhausted"] = slow_rules
        data["store"] = condition.to_dict(store.health.database)
        data["database"] = {
            "bytes": size.bytes,
            "free_bytes": size.free_bytes,
            "oldest_article_at": size.oldest_article,
        }
        print(json.dumps(iso_times(data), indent=2))  # every --format json: ISO 8601 UTC
        return 0
    print(_store_line(condition, store.health.database))
    _print_feeds(feeds, now)
    oldest = queue["oldest_pending_age"]
    print(
        f"Deliveries: {queue['pending']} pending (oldest "
        f"{_span(oldest) if oldest is not None else '-'}), {queue['dead']} dead, "
        f"{queue['by_status'].get('sent', 0)} sent, {queue['by_status'].get('held', 0)} held"
        " for digests"
    )
    print(_database_line(size, _settings.retention.articles, now))
    if slow_rules:
        named = ", ".join(f"{r} ({n} articles)" for r, n in sorted(slow_rules.items()))
        print(f"Rules whose regexes ran out of time since the daemon started: {named}")
    print("Recent alerts:")
    for a in alerts:
        print(
            f"  #{a.id} {a.rule:<28} {a.status:<10} sources {sources.get(a.story_id, 1):<3}"
            f" {(a.title or '')[:70]}"
        )
        story = members.get(a.story_id, [])
        if len(story) > 1:  # how the story was assembled: each article and why it joined
            for m in story:
                print(f"      {m['feed'][:24]:<24} {m['why_grouped'] or 'first':<12} {m['url']}")
    return 0


def _store_line(condition: StoreCondition, database: str) -> str:
    if condition.ok:
        return f"Store: {database} writable"
    return (
        f"Store: {database} is {condition.condition.upper()} ({condition.cause}): polls cannot"
        " be recorded; feeds below show their state before the fault"
    )


def _database_line(size: StoreSize, keep: timedelta | None, now: float) -> str:
    free = f", {size.free_bytes / 1e6:.1f} MB free for reuse" if size.free_bytes else ""
    oldest = (
        "no articles"
        if size.oldest_article is None
        else (f"oldest article fetched {_age(size.oldest_article, now)}")
    )
    kept = "kept forever" if keep is None else f"kept {_span(keep.total_seconds())}"
    return f"Database: {size.bytes / 1e6:.1f} MB{free}; {oldest} (articles {kept})"


def _recent_alerts(store: Store) -> tuple[list[Any], dict[int, list[dict[str, Any]]]]:
    """The ten latest alerts with their article's title, and the articles of their stories."""
    with read_tx(store.engine) as conn:
        alerts = conn.execute(
            select(
                s.alerts.c.id,
                s.alerts.c.rule,
                s.alerts.c.story_id,
                s.alerts.c.created_at,
                s.alerts.c.status,
                s.articles.c.title,
            )
            .join(s.articles, s.articles.c.id == s.alerts.c.article_id)
            .order_by(s.alerts.c.id.desc())
            .limit(10)
        ).all()
        members: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for row in conn.execute(
            select(
                s.articles.c.story_id,
                s.feeds.c.name,
                s.articles.c.url,
                s.articles.c.story_reason,
                s.articles.c.fetched_at,
            )
            .join(s.feeds, s.feeds.c.id == s.articles.c.feed_id)
            .where(s.articles.c.story_id.in_([a.story_id for a in alerts]))
            .order_by(s.articles.c.id)
        ):
            members[int(row.story_id)].append(
                {
                    "feed": row.name,
                    "url": row.url,
                    "why_grouped": row.story_reason or "",
                    "fetched_at": row.fetched_at,
                }
            )
    return list(alerts), members


def _status_json(
    feeds: list[FeedState],
    queue: dict[str, Any],
    alerts: list[Any],
    members: dict[int, list[dict[str, Any]]],
    sources: dict[int, int],
) -> dict[str, Any]:
    return {
        "feeds": [
            {
                "url": f.url,
                "name": f.name,
                "active": f.active,
                "last_success_at": f.last_success_at,
                "next_poll_at": f.next_poll_at,
                "consecutive_failures": f.consecutive_failures,
                "failing_since": f.failing_since,
                "last_error": f.last_error,
                "last_error_kind": f.last_error_kind,
                "broken": f.broken_reported,
                "entries_total": f.entries_total,
            }
            for f in feeds
        ],
        "deliveries": queue,
        "recent_alerts": [
            {
                "id": a.id,
                "rule": a.rule,
                "story_id": a.story_id,
                "title": a.title,
                "status": a.status,
                "sources": int(sources.get(a.story_id, 1)),
                "story": members.get(a.story_id, []),
                "created_at": a.created_at,
            }
            for a in alerts
        ],
    }


def _print_feeds(feeds: list[FeedState], now: float) -> None:
    active = [f for f in feeds if f.active]
    healthy = sum(1 for f in active if f.health == "ok")
    print(f"Feeds: {len(active)} active, {healthy} healthy")
    labels = {"ok": "ok", "broken": "BROKEN"}
    for f in active:
        state = labels.get(f.health, f"failing x{f.consecutive_failures}")
        line = (
            f"  {state:<12} {f.name[:40]:<40} last ok {_age(f.last_success_at, now):<10}"
            f" next {_age(f.next_poll_at, now):<10} entries {f.entries_total}"
        )
        if f.consecutive_failures:
            line += f"\n               [{f.last_error_kind}] {(f.last_error or '')[:160]}"
        print(line)


def deliveries_list(path: str, *, status: str | None, limit: int, fmt: str) -> int:
    store, _ = _store(path)
    try:
        rows = store.outbox.list_deliveries(status, limit=limit)
    finally:
        store.close()
    now = time.time()
    if fmt == "json":
        print(
            json.dumps(
                [
                    {
                        "id": d.id,
                        "channel": d.channel,
                        "kind": d.kind,
                        "status": d.status,
                        "attempts": d.attempts,
                        "next_attempt_at": iso(d.next_attempt_at),
                        "created_at": iso(d.created_at),
                        "sent_at": iso(d.sent_at),
                        "last_error": d.last_error,
                        "idempotency_key": d.idempotency_key,
                        "title": d.payload.get("title"),
                    }
                    for d in rows
                ],
                indent=2,
            )
        )
        return 0
    for d in rows:
        when = _age(d.next_attempt_at, now) if d.status in ("pending", "failed") else ""
        print(
            f"#{d.id:<6} {d.status:<9} {d.channel:<14} {d.kind:<16} attempts {d.attempts:<3}"
            f" {when:<12} {str(d.payload.get('title', ''))[:60]}"
        )
        if d.last_error and d.status in ("failed", "dead"):
            print(f"         {d.last_error[:200]}")
    if not rows:
        print("no deliveries" + (f" with status {status}" if status else ""))
    return 0


class UnknownDelivery(MonitorError):
    """`deliveries retry` was given ids that name no delivery, or none that can be retried."""

    kind = "usage"


def retry_problems(found: dict[int, str], ids: list[int]) -> list[str]:
    """What is wrong with the ids given to `deliveries retry` (empty when all can be retried)."""
    problems = []
    for i in ids:
        state = found.get(i)
        if state is None:
            problems.append(f"no delivery #{i}")
        elif state not in RETRYABLE:
            problems.append(f"delivery #{i} is {state}, not failed or dead")
    return problems


RETRYABLE = ("failed", "dead")


def deliveries_retry(path: str, *, ids: list[int], dead: bool, now: float) -> int:
    if not ids and not dead:
        print("name delivery ids, or --dead for every dead delivery", file=sys.stderr)
        return 2
    store, _ = _store(path)
    try:
        if ids:
            with read_tx(store.engine) as conn:
                found = {
                    int(row.id): str(row.status)
                    for row in conn.execute(
                        select(s.deliveries.c.id, s.deliveries.c.status).where(
                            s.deliveries.c.id.in_(ids)
                        )
                    )
                }
            if problems := retry_problems(found, ids):
                raise UnknownDelivery("; ".join(problems) + " (see `monitor deliveries list`)")
        n = store.outbox.retry(ids or None, dead=dead, now=now)
    finally:
        store.close()
    print(f"{n} deliveries will be retried at the next delivery round")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    return status(args.config, fmt=args.format)


def cmd_deliveries_list(args: argparse.Namespace) -> int:
    return deliveries_list(args.config, status=args.status, limit=args.limit, fmt=args.format)


def cmd_deliveries_retry(args: argparse.Namespace) -> int:
    return deliveries_retry(args.config, ids=args.ids, dead=args.dead, now=time.time())
