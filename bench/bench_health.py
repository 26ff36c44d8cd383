"""What /healthz's store queries cost at 100,000 feeds and 1,000,000 deliveries (issue 19).

    python bench/bench_health.py                      # SQLite
    python bench/bench_health.py --postgres           # and a throwaway PostgreSQL
    python bench/bench_health.py --feeds 10000 --deliveries 100000

The store is filled directly (feeds: 1 % failing, 0.2 % broken, 1 % removed from the config;
deliveries: all sent but 1,000 pending, 100 failed, 200 held and 50 dead), then each way of
taking the health snapshot's counts is timed, the median of 7 runs:

  * before: every feed read (`FeedRepo.all`, counted by health in Python) and every delivery
    counted by status (`Outbox.stats`, which `monitor status` still uses);
  * after: `FeedRepo.health_counts` (the `ix_feeds_health` index) and `Outbox.backlog` (the
    status index and the claim's partial index), which /healthz and /metrics use.

Both must give the same feed counts and the same backlog; the table says so.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from monitor.store import Store  # noqa: E402
from monitor.store import schema as s  # noqa: E402
from monitor.store.engine import analyse, write_tx  # noqa: E402

NOW = 1_800_000_000.0
BACKLOG = {"pending": 1000, "failed": 100, "held": 200, "dead": 50}


def fill(st: Store, feeds: int, deliveries: int) -> None:
    chunk = 20_000
    with write_tx(st.engine) as conn:
        for start in range(0, feeds, chunk):
            rows = []
            for i in range(start, min(start + chunk, feeds)):
                failing = i % 100 == 1
                rows.append(
                    {
                        "url": f"http://h{i % 500}.example/f/{i}.xml",
                        "fetch_url": f"http://h{i % 500}.example/f/{i}.xml",
                        "name": f"Feed {i}",
                        "active": i % 100 != 7,
                        "allow_private": False,
                        "next_poll_at": NOW + i,
                        "consecutive_failures": 3 if failing else 0,
                        "broken_reported": failing and i % 500 == 1,
                        "redirect_count": 0,
                        "polls": 5,
                        "not_modified": 2,
                        "entries_total": 20,
                        "created_at": NOW,
                        "paused": False,
                    }
                )
            conn.execute(s.feeds.insert(), rows)
        statuses = [st for st, n in BACKLOG.items() for _ in range(n)]
        for start in range(0, deliveries, chunk):
            rows = []
            for i in range(start, min(start + chunk, deliveries)):
                status = statuses[i] if i < len(statuses) else "sent"
                rows.append(
                    {
                        "channel": f"c{i % 5}",
                        "kind": "alert",
                        "idempotency_key": f"k{i}",
                        "status": status,
                        "attempts": 1,
                        "next_attempt_at": NOW + i,
                        "payload": "{}",
                        "created_at": NOW - deliveries + i,
                    }
                )
            conn.execute(s.deliveries.insert(), rows)
        analyse(conn)


def before(st: Store) -> tuple[dict[str, int], dict[str, Any]]:
    states = Counter(f.health for f in st.feeds.all() if f.active)
    stats = st.outbox.stats(NOW)
    backlog = {k: v for k, v in stats["by_status"].items() if k in BACKLOG}
    return dict(sorted(states.items())), {**stats, "by_status": backlog}


def after(st: Store) -> tuple[dict[str, int], dict[str, Any]]:
    return st.feeds.health_counts(), st.outbox.backlog(NOW)


def timed(fn: Callable[[Store], Any], st: Store) -> tuple[float, Any]:
    times = []
    out = None
    for _ in range(7):
        t = time.perf_counter()
        out = fn(st)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000, out


def measure(name: str, url: str, feeds: int, deliveries: int) -> list[tuple[str, ...]]:
    st = Store(url)
    try:
        t = time.perf_counter()
        fill(st, feeds, deliveries)
        print(f"{name}: filled in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        old_ms, old = timed(before, st)
        new_ms, new = timed(after, st)
    finally:
        st.close()
    same = "yes" if old == new else f"NO: {old} != {new}"
    return [
        (name, "before: every feed and delivery", f"{old_ms:.1f}", same),
        (name, "after: health_counts + backlog", f"{new_ms:.1f}", same),
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--feeds", type=int, default=100_000)
    ap.add_argument("--deliveries", type=int, default=1_000_000)
    ap.add_argument("--postgres", action="store_true", help="also on a throwaway PostgreSQL")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-health-") as d:
        rows += measure("SQLite", f"sqlite:///{d}/monitor.db", args.feeds, args.deliveries)
    if args.postgres:
        import bench_nodes

        pg = bench_nodes.Postgres()
        try:
            rows += measure("PostgreSQL", pg.database("health"), args.feeds, args.deliveries)
        finally:
            pg.stop()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"\nHealth snapshot's store queries, {args.feeds:,} feeds and {args.deliveries:,}"
        f" deliveries (median of 7; {os.cpu_count()} cores, load average {load})\n"
    )
    print("| database | queries | ms | same answer |")
    print("|---|---|---:|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
