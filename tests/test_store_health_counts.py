"""The health snapshot's bounded counts say what counting every row said (issue 19).

`FeedRepo.health_counts` against every feed's health; `Outbox.backlog` against `Outbox.stats`
(every delivery by status) restricted to the deliveries not done with. On SQLite and on a real
PostgreSQL.
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import update

from monitor.store import FeedSpec, Store
from monitor.store import schema as s
from monitor.store.engine import write_tx

NOW = 1_800_000_000.0
STATUSES = ["pending"] * 4 + ["failed"] * 3 + ["held"] * 2 + ["dead"] + ["sent"] * 7
STATUSES += ["digested"] * 2


def _fill(st: Store) -> None:
    st.feeds.sync([FeedSpec(f"http://h.example/{i}", f"F{i}", False) for i in range(12)], NOW)
    with write_tx(st.engine) as conn:
        f = s.feeds.c
        conn.execute(update(s.feeds).where(f.id.in_([2, 3, 4])).values(consecutive_failures=2))
        conn.execute(update(s.feeds).where(f.id.in_([4, 5])).values(broken_reported=True))
        conn.execute(update(s.feeds).where(f.id == 5).values(consecutive_failures=9))
        # Removed from the config: not counted, whatever its health.
        conn.execute(update(s.feeds).where(f.id.in_([3, 6])).values(active=False))
        conn.execute(
            s.deliveries.insert(),
            [
                {
                    "channel": "hook",
                    "kind": "alert",
                    "idempotency_key": f"k{i}",
                    "status": status,
                    "attempts": 0,
                    "next_attempt_at": NOW + i,
                    "payload": "{}",
                    "created_at": NOW - 100 + i,
                }
                for i, status in enumerate(STATUSES)
            ],
        )


def test_feed_health_and_backlog_counts_match_counting_every_row(store_url: str) -> None:
    st = Store(store_url)
    try:
        assert st.feeds.health_counts() == {}
        assert st.outbox.backlog(NOW)["by_status"] == {}
        _fill(st)
        every = Counter(f.health for f in st.feeds.all() if f.active)
        assert st.feeds.health_counts() == dict(every) == {"ok": 7, "failing": 1, "broken": 2}
        stats, backlog = st.outbox.stats(NOW), st.outbox.backlog(NOW)
        assert backlog["by_status"] == {
            k: v for k, v in stats["by_status"].items() if k not in ("sent", "digested")
        }
        assert backlog["by_status"] == {"pending": 4, "failed": 3, "held": 2, "dead": 1}
        for key in ("pending", "dead", "oldest_pending_age"):
            assert backlog[key] == stats[key]
        assert backlog["oldest_pending_age"] == 100.0
    finally:
        st.close()
