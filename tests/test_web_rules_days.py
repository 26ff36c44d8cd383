"""The rules page's matches and alerts per day (`ConsoleRepo.rule_days`): each UTC day counted
from its own index range, the finished days reused for `PAST_DAYS_TTL` and today counted on
every call."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import delete, insert

from monitor.store import Store
from monitor.store import schema as s
from monitor.store.console import DAY, PAST_DAYS_TTL, ConsoleRepo
from monitor.store.engine import write_tx

NOW = 1_780_000_000.0 // DAY * DAY + 15 * 3600  # 15:00 UTC on some day
TODAY = NOW // DAY * DAY


def add(store: Store, rule: str, times: list[float], first_id: int) -> None:
    """One article, story, match and alert per time."""
    ids = range(first_id, first_id + len(times))
    with write_tx(store.engine) as conn:
        conn.execute(
            insert(s.stories),
            [{"id": i, "title": "t", "created_at": 0.0, "updated_at": 0.0} for i in ids],
        )
        conn.execute(
            insert(s.articles),
            [
                {
                    "id": i,
                    "feed_id": 1,
                    "guid": f"g{i}",
                    "url": f"https://x.example/{i}",
                    "title": "t",
                    "summary": "",
                    "body": "",
                    "authors": "[]",
                    "tags": "[]",
                    "fetched_at": t,
                    "story_id": i,
                    "story_reason": "new",
                }
                for i, t in zip(ids, times, strict=True)
            ],
        )
        conn.execute(
            insert(s.matches),
            [
                {"article_id": i, "rule": rule, "explanation": "[]", "created_at": t}
                for i, t in zip(ids, times, strict=True)
            ],
        )
        conn.execute(
            insert(s.alerts),
            [
                {
                    "id": i,
                    "key": f"k{i}",
                    "rule": rule,
                    "story_id": i,
                    "article_id": i,
                    "severity": "high",
                    "status": "sent",
                    "message": "{}",
                    "created_at": t,
                }
                for i, t in zip(ids, times, strict=True)
            ],
        )


def test_days_are_counted_and_finished_days_reused(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/monitor.db")
    try:
        with write_tx(store.engine) as conn:
            conn.execute(
                insert(s.feeds),
                [
                    {
                        "id": 1,
                        "url": "https://x.example/f",
                        "fetch_url": "https://x.example/f",
                        "name": "x",
                        "active": True,
                        "allow_private": False,
                        "next_poll_at": 0.0,
                        "consecutive_failures": 0,
                        "broken_reported": False,
                        "redirect_count": 0,
                        "polls": 0,
                        "entries_total": 0,
                        "created_at": 0.0,
                    }
                ],
            )
        add(
            store,
            "a",
            [
                TODAY + 60,
                TODAY + 120,
                TODAY - 1,
                TODAY - DAY,
                TODAY - 13 * DAY,
                TODAY - 13 * DAY - 1,
            ],
            1,
        )
        add(store, "b", [TODAY - 2 * DAY + 5, NOW + 3 * DAY], 100)  # one stamped ahead: today
        clock = [0.0]
        repo = ConsoleRepo(store.engine, clock=lambda: clock[0])
        days = repo.rule_days(["a", "b", "none"], NOW)
        a = [0] * 14
        a[-1], a[-2], a[0] = 2, 2, 1  # today; yesterday (23:59:59 and 00:00); 13 days ago
        b = [0] * 14
        b[-1], b[-3] = 1, 1
        assert days["a"] == {"matches": a, "alerts": a}
        assert days["b"] == {"matches": b, "alerts": b}
        assert days["none"] == {"matches": [0] * 14, "alerts": [0] * 14}
        # A new alert today is counted at once; a change to a finished day waits for the TTL.
        add(store, "a", [NOW - 10], 200)
        with write_tx(store.engine) as conn:
            conn.execute(delete(s.alerts).where(s.alerts.c.id == 3))  # yesterday's 23:59:59
        days = repo.rule_days(["a", "b", "none"], NOW)
        assert days["a"]["alerts"][-1] == 3 and days["a"]["alerts"][-2] == 2
        clock[0] += PAST_DAYS_TTL + 1
        days = repo.rule_days(["a", "b", "none"], NOW)
        assert days["a"]["alerts"][-2] == 1 and days["a"]["matches"][-2] == 2
        # The next day moves the window: nothing is reused from the old one.
        later = repo.rule_days(["a"], NOW + DAY)
        assert later["a"]["matches"][-2] == 3 and later["a"]["matches"][0] == 0
        assert repo.rule_days(["a"], NOW, days=3)["a"]["matches"] == [0, 2, 3]
    finally:
        store.close()
