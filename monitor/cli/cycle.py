"""`monitor once` (one cycle, for cron) and `monitor run` (the daemon).

`once` polls every due feed, processes and delivers, then says what it did. Feeds in backoff
after failures are skipped (named, with when they are due) unless `--force`. Exit codes: 0, or
3 (`EXIT_FEEDS_FAILED`) when a feed failed, so cron and monitoring can tell.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from sqlalchemy import update

from monitor.cli import EXIT_FEEDS_FAILED, EXIT_OK
from monitor.cli.timefmt import iso
from monitor.daemon import Daemon, Runtime, load_checked, setup_logging
from monitor.pipeline import PollOutcome, failed_feed
from monitor.store import FeedState
from monitor.store import schema as s
from monitor.store.engine import write_tx


@dataclass(slots=True)
class OnceResult:
    """What one `monitor once` cycle did (what the summary and the exit code are made of)."""

    polls: list[PollOutcome] = field(default_factory=list)
    skipped: list[FeedState] = field(default_factory=list)
    delivered: int = 0

    @property
    def failed(self) -> list[PollOutcome]:
        return [p for p in self.polls if p.status == "failed"]


def in_backoff(feeds: list[FeedState], now: float) -> list[FeedState]:
    """The active feeds that a cycle now would skip: failing, and not due again yet."""
    return [f for f in feeds if f.active and f.consecutive_failures > 0 and f.next_poll_at > now]


def exit_code(result: OnceResult) -> int:
    return EXIT_FEEDS_FAILED if result.failed else EXIT_OK


def summary(result: OnceResult) -> list[str]:
    """The lines `once` prints on stderr: skipped feeds, failed feeds, then the totals."""
    lines = [
        f"skipped {f.name} (in backoff after {f.consecutive_failures} failure(s), due"
        f" {iso(f.next_poll_at)}; --force polls it now)"
        for f in result.skipped
    ]
    lines += [
        f"failed {failed_feed(p.name or p.feed, p.feed, p.error or '')}: {p.error}"
        for p in result.failed
    ]
    new = sum(p.new for p in result.polls)
    alerts = sum(p.alerts for p in result.polls)
    lines.append(
        f"polled {len(result.polls)} feeds ({len(result.failed)} failed, {len(result.skipped)}"
        f" skipped in backoff), {new} new entries, {alerts} alerts,"
        f" {result.delivered} deliveries attempted"
    )
    return lines


def _progress(mode: str, total: int, stream: IO[str]) -> Any:
    """A tqdm bar on a terminal (or with --progress always); None otherwise."""
    if mode == "never" or (mode == "auto" and not stream.isatty()) or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="feed", desc="polling", file=stream, leave=False)


async def once_cycle(
    rt: Runtime, *, force: bool, on_outcome: Callable[[PollOutcome], None] | None = None
) -> OnceResult:
    """Poll every due feed (every feed with `force`), process, deliver everything due."""
    now = time.time()
    result = OnceResult()
    feeds = await asyncio.to_thread(rt.store.feeds.all)
    skipped = in_backoff(feeds, now)
    await asyncio.to_thread(_make_due, rt, now, force)
    result.skipped = [] if force else skipped

    def collect(outcome: PollOutcome) -> None:
        result.polls.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    await rt.poll_due(on_outcome=collect)
    await rt.collect_due_digests()
    result.delivered = await rt.deliverer.drain()
    await rt.prune_stories()
    return result


def _make_due(rt: Runtime, now: float, force: bool) -> None:
    rt.store.feeds.poll_now(now)  # healthy feeds; a failing one keeps its backoff
    if force:
        with write_tx(rt.store.engine) as conn:
            conn.execute(update(s.feeds).where(s.feeds.c.active.is_(True)).values(next_poll_at=now))


async def once(path: str, *, force: bool = False, progress: str = "auto") -> int:
    checked = load_checked(path)
    setup_logging(checked.settings.log_level, checked.settings.log_format)
    rt = Runtime(checked, config_path=path)
    bar = _progress(progress, sum(1 for f in checked.settings.feed_list), sys.stderr)
    try:
        result = await once_cycle(
            rt, force=force, on_outcome=(lambda _o: bar.update(1)) if bar is not None else None
        )
    finally:
        if bar is not None:
            bar.close()
        await rt.aclose()
    for line in summary(result):
        print(line, file=sys.stderr)
    return exit_code(result)


async def run(path: str) -> int:
    checked = load_checked(path)
    setup_logging(checked.settings.log_level, checked.settings.log_format)
    rt = Runtime(checked, config_path=path)
    await Daemon(rt).run()
    return 0


def cmd_once(args: argparse.Namespace) -> int:
    return asyncio.run(once(args.config, force=args.force, progress=args.progress))


def cmd_run(args: argparse.Namespace) -> int:
    return asyncio.run(run(args.config))
