"""Alert delivery through the outbox, on loopback receivers: nothing lost, nothing flooded.

Alerts are made the real way: a loopback news feed whose items (AG News texts, each title
carrying the word "Zebulon" that the test rule looks for) are polled by a `Runtime` built from
a config file, so every alert and its deliveries are committed by the pipeline. The delivery
worker is the daemon's own `Deliverer`, driven round by round, against a scriptable webhook
receiver or a Slack stand-in as strict as Slack.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from corpora import DATA
from feedserver import Item, NewsSite
from receivers import HttpReceiver, Request, Respond, SlackReceiver, WebhookReceiver, free_port
from sqlalchemy import select

from monitor.daemon import Runtime, load_checked, previous_fire_time
from monitor.store import Enqueue, Store, enqueue
from monitor.store import schema as s
from monitor.store.engine import read_tx, write_tx

AG_NEWS = DATA / "news" / "ag_news" / "train_subset.csv"
WORD = "Zebulon"  # in every test title, and nowhere in AG News


# --------------------------------------------------------------------------- helpers


def ag_texts(n: int, *, start: int = 0) -> list[str]:
    """`n` AG News texts, distinct in their first 60 characters (no two the same story)."""
    texts: list[str] = []
    seen: set[str] = set()
    with AG_NEWS.open(encoding="utf-8", newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            key = row["text"][:60].casefold()
            if i < start or key in seen:
                continue
            seen.add(key)
            texts.append(row["text"])
            if len(texts) == n:
                return texts
    raise AssertionError(f"the corpus has fewer than {n} distinct texts after row {start}")


def news_items(n: int, *, start: int = 0, prefix: str = "") -> list[Item]:
    """`n` feed items that the test rule matches, each a different story."""
    return [
        Item(
            f"{prefix}{WORD} {start + i}: {text[:90]}",
            f"/news/{prefix.strip().lower()}{start + i}",
            f"{prefix.strip().lower()}item-{start + i}",
            text,
        )
        for i, text in enumerate(ag_texts(n, start=start * 3))
    ]


def write_config(
    tmp: Path,
    site: NewsSite,
    *,
    channels: str,
    rules: str | None = None,
    delivery: str = "{backoff_base: 0.2s, backoff_max: 2s, lease: 5s, max_attempts: 10}",
    default_channels: str = "[hook]",
) -> Path:
    rules = rules or f"[{{name: zebulon, query: {WORD.lower()}, severity: medium}}]"
    cfg = tmp / "monitor.yaml"
    cfg.write_text(f"""
database: sqlite:///{tmp}/monitor.db
log_level: WARNING
defaults: {{interval: 1h, min_interval: 1s, extract: false, channels: {default_channels}}}
fetch: {{workers: 1}}
daemon: {{tick: 0.2s, deliver_every: 0.2s}}
delivery: {delivery}
feeds:
  - {{url: "{site.url}/feed.xml", name: Loopback News, allow_private: true}}
rules: {rules}
channels:
{channels}
""")
    return cfg


def hook_channel(name: str, receiver: HttpReceiver | str, extra: str = "") -> str:
    url = receiver if isinstance(receiver, str) else receiver.url
    return f'  {name}: {{type: webhook, url: "{url}", allow_private: true{extra}}}\n'


@contextlib.asynccontextmanager
async def runtime(cfg: Path) -> AsyncIterator[Runtime]:
    rt = Runtime(load_checked(cfg), config_path=str(cfg))
    try:
        yield rt
    finally:
        await rt.aclose()


async def poll(rt: Runtime) -> int:
    """Poll every feed once; return the number of alerts committed."""
    await asyncio.to_thread(rt.store.feeds.poll_now, time.time())
    return sum(p.alerts for p in await rt.poll_due())


async def deliver_until(rt: Runtime, done: Callable[[], bool], *, timeout: float = 20.0) -> None:
    """Run delivery rounds, as the daemon's ticker does, until `done()` (or fail)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError("deliveries did not complete in time")
        await rt.deliverer.run_once()
        await asyncio.sleep(0.05)


def statuses(rt: Runtime) -> Counter[str]:
    with read_tx(rt.store.engine) as conn:
        return Counter(conn.execute(select(s.deliveries.c.status)).scalars())


def keys(requests: list[Request]) -> Counter[str]:
    return Counter(r.headers["idempotency-key"] for r in requests)


# --------------------------------------------------------------------------- retries


async def test_every_alert_arrives_once_through_refusal_500_and_429(tmp_path: Path) -> None:
    port = free_port()  # nothing listens here yet: connections are refused
    with NewsSite() as site:
        site.feed("/feed.xml", news_items(3))
        cfg = write_config(
            tmp_path, site, channels=hook_channel("hook", f"http://127.0.0.1:{port}/")
        )
        async with runtime(cfg) as rt:
            assert await poll(rt) == 3
            assert await rt.deliverer.run_once() == 3
            failed = rt.store.outbox.list_deliveries("failed")
            assert len(failed) == 3
            assert all(d.attempts == 1 and d.last_error for d in failed)
            assert statuses(rt)["sent"] == 0  # nothing is sent until the receiver says so

            with WebhookReceiver(port=port) as hook:
                hook.script(Respond(500), Respond(429, headers={"Retry-After": "2"}))
                await deliver_until(rt, lambda: len(hook.received) >= 3)
                await asyncio.sleep(0.3)  # room for a stray extra request to show up
            assert statuses(rt) == {"sent": 3}

    first, second = hook.requests[0], hook.requests[1]
    assert len(hook.requests) == 5  # 500, 429, 200, then the two retries
    accepted = keys(hook.received)
    assert sorted(accepted.values()) == [1, 1, 1]
    assert set(accepted) == {r.json()["idempotency_key"] for r in hook.received}
    retry_of_500 = next(
        r
        for r in hook.requests[2:]
        if r.headers["idempotency-key"] == first.headers["idempotency-key"]
    )
    retry_of_429 = next(
        r
        for r in hook.requests[2:]
        if r.headers["idempotency-key"] == second.headers["idempotency-key"]
    )
    assert retry_of_429.at - second.at >= 2.0  # Retry-After: 2 is obeyed
    assert retry_of_500.at - first.at >= 0.2 / 2  # backoff: at least half the first step
    assert retry_of_500.at < retry_of_429.at  # and no 2 s wait without a Retry-After


async def test_a_rate_limited_channel_hands_back_rows_before_their_lease_runs_out(
    tmp_path: Path,
) -> None:
    # Two workers share the outbox; one channel sends at most 2 a second, and leases are 1 s.
    # A worker that kept a batch of 8 leased while its limiter made it wait would let the other
    # worker re-send them when the leases expired; rows must be handed back instead.
    with NewsSite() as site, WebhookReceiver() as hook:
        site.feed("/feed.xml", news_items(8))
        cfg = write_config(
            tmp_path,
            site,
            channels=hook_channel("hook", hook, ", rate_limit: 2/s"),
            delivery="{backoff_base: 0.2s, lease: 1s, batch: 20}",
        )
        async with runtime(cfg) as a, runtime(cfg) as b:
            assert await poll(a) == 8
            done = lambda: len(hook.received) >= 8  # noqa: E731
            await asyncio.gather(deliver_until(a, done), deliver_until(b, done))
            await asyncio.sleep(0.3)
            assert statuses(a) == {"sent": 8}
    assert len(hook.requests) == 8
    assert sorted(keys(hook.received).values()) == [1] * 8


# --------------------------------------------------------------------------- Slack


async def test_a_burst_to_slack_arrives_whole_and_within_its_limits(tmp_path: Path) -> None:
    items = news_items(5)
    # One alert with a very long text: the message must still be one Slack accepts.
    items[0].summary = " ".join(ag_texts(40, start=500))
    with NewsSite() as site, SlackReceiver() as slack:
        site.feed("/feed.xml", items)
        cfg = write_config(
            tmp_path,
            site,
            channels=f'  desk: {{type: slack, webhook_url: "{slack.url}", allow_private: true}}\n',
            default_channels="[desk]",
            delivery="{backoff_base: 0.2s, lease: 2s, batch: 20}",
        )
        async with runtime(cfg) as rt:
            assert await poll(rt) == 5
            await deliver_until(rt, lambda: len(slack.received) >= 5)
            await asyncio.sleep(0.3)
            assert statuses(rt) == {"sent": 5}
    assert [why for _, why in slack.rejected if why != "rate_limited"] == []
    titles = Counter(r.json()["text"] for r in slack.received)
    assert len(titles) == 5 and set(titles.values()) == {1}
    accepted = sorted(r.at for r in slack.received)
    assert all(b - a >= 1.0 - slack.tolerance for a, b in itertools.pairwise(accepted))
    for rejected, _ in slack.rejected:  # a 429, if any, is followed by a wait of Retry-After
        later = [r.at for r in slack.requests if r.at > rejected.at]
        assert not later or min(later) - rejected.at >= 1.0


# --------------------------------------------------------------------------- digests


def test_previous_fire_time_finds_the_period_that_ended_last() -> None:
    now = datetime(2026, 11, 24, 10, 42, 30, tzinfo=UTC)
    assert previous_fire_time("* * * * *", now) == datetime(2026, 11, 24, 10, 42, tzinfo=UTC)
    assert previous_fire_time("0 8 * * *", now) == datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    assert previous_fire_time("0 8 1 * *", now) == datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    assert previous_fire_time("0 0 29 2 *", now) == datetime(2024, 2, 29, tzinfo=UTC)
    on_the_dot = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    assert previous_fire_time("0 8 * * *", on_the_dot) == on_the_dot


async def test_a_digest_is_one_message_once_across_a_restart_mid_period(tmp_path: Path) -> None:
    with NewsSite() as site, SlackReceiver() as slack:
        site.feed("/feed.xml", news_items(30))
        channels = (
            f'  desk: {{type: slack, webhook_url: "{slack.url}", allow_private: true,'
            ' digest: "* * * * *"}\n'
        )
        cfg = write_config(tmp_path, site, channels=channels, default_channels="[desk]")
        async with runtime(cfg) as rt:
            assert await poll(rt) == 30
            # The period that ended before these alerts existed gets none of them.
            await rt.collect_due_digests(datetime.now(UTC))
            assert await rt.deliverer.run_once() == 0
            assert statuses(rt) == {"held": 30}

        # The daemon restarts in the middle of the period; more alerts come in.
        site.feed("/feed.xml", news_items(30) + news_items(30, start=30, prefix="Later "))
        async with runtime(cfg) as rt:
            assert await poll(rt) == 30
            with read_tx(rt.store.engine) as conn:
                newest = conn.execute(select(s.deliveries.c.created_at)).scalars().all()
            period_over = datetime.fromtimestamp(max(newest), UTC) + timedelta(minutes=1)
            await rt.collect_due_digests(period_over)
            await deliver_until(rt, lambda: len(slack.received) >= 1)

        # Restarted again, after the digest was sent: the same period is not sent twice.
        async with runtime(cfg) as rt:
            await rt.collect_due_digests(period_over)
            assert await rt.deliverer.run_once() == 0
            assert statuses(rt) == {"digested": 60, "sent": 1}

    assert len(slack.requests) == 1 and slack.rejected == []
    [digest] = slack.received
    text = str(digest.json())
    assert "60 alerts" in text
    assert "more alerts" in text  # 60 alerts do not fit one Slack message: the rest is counted


def test_a_digest_another_node_collected_first_is_not_an_error_on_postgresql(
    pg_url: str,
) -> None:
    # Two nodes close the same period at once: both see no digest yet, the other one inserts
    # first. On PostgreSQL the losing INSERT aborts the statement; it must not abort the call.
    store = Store(pg_url)
    try:
        with write_tx(store.engine) as conn:
            for i in range(3):
                enqueue(
                    conn,
                    Enqueue(channel="mail", kind="alert", key=f"a{i}:mail", held=True),
                    payload={"n": i},
                    now=1000.0 + i,
                )

        def other_node_wins(items: list[dict[str, Any]]) -> dict[str, Any]:
            with write_tx(store.engine) as other:
                enqueue(
                    other,
                    Enqueue(channel="mail", kind="digest", key="digest:mail:P"),
                    payload={"items": items},
                    now=2000.0,
                )
            return {"items": items}

        assert (
            store.outbox.collect_digest("mail", period="P", now=2000.0, build=other_node_wins)
            is None
        )
        assert Counter(d.status for d in store.outbox.list_deliveries()) == {
            "held": 3,
            "pending": 1,
        }
        # A later period still finds the held alerts: nothing was lost in the race.
        assert (
            store.outbox.collect_digest(
                "mail", period="Q", now=3000.0, build=lambda items: {"items": items}
            )
            is not None
        )
    finally:
        store.close()


def test_run_sends_a_digest_right_after_its_period_ends(tmp_path: Path) -> None:
    """`monitor run` collects a digest on its channel's cron, not on a minutely check: the
    daemon starts 40-45 s into a minute, so a check every minute from its start would send the
    digest of this minute about 40 s after the minute ended."""
    import os
    import subprocess
    import sys

    with NewsSite() as site, WebhookReceiver() as hook:
        site.feed("/feed.xml", news_items(3))
        cfg = write_config(
            tmp_path,
            site,
            channels=hook_channel("hook", hook, ', digest: "* * * * *"'),
        )
        while not 40 <= datetime.now(UTC).second < 45:
            time.sleep(0.2)
        started = datetime.now(UTC)
        period_end = started.replace(second=0, microsecond=0) + timedelta(minutes=1)
        root = Path(__file__).resolve().parents[1]
        with open(tmp_path / "run.log", "w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "monitor", "run", "--config", str(cfg)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(os.environ, PYTHONPATH=str(root)),
                cwd=root,
            )
            try:
                [digest] = hook.wait_for(1, timeout=40)
                arrived = datetime.now(UTC) - timedelta(seconds=time.monotonic() - digest.at)
            finally:
                proc.terminate()
                rc = proc.wait(timeout=30)
        text = (tmp_path / "run.log").read_text()
        assert rc == 0 and "Traceback" not in text and "ERROR" not in text, text
        body = digest.json()
        assert body["kind"] == "digest" and len(body["items"]) == 3, body
        late = (arrived - period_end).total_seconds()
        assert 0 <= late <= 10, f"digest of the period ending {period_end} came {late:.1f} s after"
