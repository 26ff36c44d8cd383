"""Retention on a SQLite store with old articles: how long one batch holds the writer, the
rows deleted per second, and the file size before and after (incremental vacuum).

    python bench/bench_retention.py [--articles 20000] [--batch 500]

Each article has a 6 KB body, a 2 KB summary, a 512-byte MinHash signature, one match and 16
LSH bands, in stories of four articles closed 40 days ago (like a store at ~10 KB per article).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert

from monitor.store import Store
from monitor.store import schema as s
from monitor.store.engine import write_tx
from monitor.store.retention import RetentionPolicy, _full, _steps, incremental_vacuum, store_size

DAY = 86400.0


def fill(store: Store, n: int) -> None:
    now = time.time()
    old = now - 40 * DAY
    with write_tx(store.engine) as conn:
        feed = conn.execute(
            insert(s.feeds).values(
                url="http://x/f", fetch_url="http://x/f", name="f", created_at=old
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        for start in range(0, n, 1000):
            rows = range(start, min(n, start + 1000))
            stories = {}
            for i in rows:
                if i % 4 == 0:
                    stories[i] = conn.execute(
                        insert(s.stories).values(title="t", created_at=old, updated_at=old)
                    ).inserted_primary_key[0]  # type: ignore[index]
            first = None
            for i in rows:
                sid = stories.get(i - i % 4) or stories[max(k for k in stories if k <= i)]
                aid = conn.execute(
                    insert(s.articles).values(
                        feed_id=feed,
                        guid=f"g{i}",
                        url=f"http://x/{i}",
                        title="t" * 80,
                        summary="s" * 2000,
                        body="b" * 6000,
                        fetched_at=old,
                        story_id=sid,
                        minhash=b"m" * 512,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
                first = first or aid
                conn.execute(
                    insert(s.matches).values(
                        article_id=aid, rule="r", explanation="[]", created_at=old
                    )
                )
                conn.execute(
                    insert(s.story_bands),
                    [
                        {"band": aid * 16 + b, "article_id": aid, "story_id": sid, "seen_at": old}
                        for b in range(16)
                    ],
                )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--articles", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/bench.db")
        try:
            fill(store, args.articles)
            before = store_size(store.engine).bytes
            policy = RetentionPolicy(30 * DAY, 365 * DAY, 3 * DAY, batch=args.batch)
            batches: list[float] = []
            rows = 0

            async def run() -> None:
                nonlocal rows
                for step in _steps(policy, time.time()):
                    while True:
                        t0 = time.perf_counter()
                        done = await store.writer.run(step)
                        batches.append(time.perf_counter() - t0)
                        rows += done.rows
                        if not _full(done, policy.batch):
                            break

            t0 = time.perf_counter()
            asyncio.run(run())
            pruned_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            pages = incremental_vacuum(store.engine)
            vacuum_s = time.perf_counter() - t1
            after = store_size(store.engine).bytes
        finally:
            store.close()
    print(
        "| articles | batch | batches | rows deleted | rows/s | batch median | batch max "
        "| vacuum | size before | size after |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.articles} | {args.batch} | {len(batches)} | {rows} | {rows / pruned_s:,.0f} "
        f"| {statistics.median(batches) * 1000:.0f} ms | {max(batches) * 1000:.0f} ms "
        f"| {vacuum_s:.2f} s ({pages} pages) | {before / 1e6:.1f} MB | {after / 1e6:.1f} MB |"
    )


if __name__ == "__main__":
    main()
