"""The console with 100,000 alerts stored: how fast the alerts page and its API answer.

    PYTHONPATH=. python3 bench/bench_web.py [--alerts 100000] [--repeat 30]

Fills a fresh SQLite database (in a temporary folder) with N alerts over 50 feeds and 5 rules
(each with its article, story, match and one delivery, a tenth of them dead), serves the
console with uvicorn on 127.0.0.1 exactly as the daemon does, and times each request from a
client over HTTP (keep-alive), printing median and 95th percentile per request. The target
(issue 17): the alerts page and its API under 100 ms median.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import insert

from monitor.checks import compile_settings
from monitor.config import load_config
from monitor.metrics import Metrics
from monitor.store import Store
from monitor.store import schema as s
from monitor.store.engine import write_tx
from monitor.web.context import Console
from monitor.web.server import WebServer

TOKEN = "bench-token-0123456789abcdef"
RULES = ["troops", "ports", "energy", "elections", "health"]
SEVERITIES = ["low", "medium", "high", "critical"]


def fill(store: Store, n: int, now: float) -> None:
    feeds = [
        {
            "id": i + 1,
            "url": f"https://news{i}.example/feed",
            "fetch_url": f"https://news{i}.example/feed",
            "name": f"Outlet {i}",
            "active": True,
            "allow_private": False,
            "next_poll_at": now,
            "consecutive_failures": 0,
            "broken_reported": False,
            "redirect_count": 0,
            "polls": 10,
            "entries_total": n // 50,
            "created_at": now - 86400 * 30,
        }
        for i in range(50)
    ]
    message = json.dumps({"title": "t", "why": []})
    batch = 10_000
    with write_tx(store.engine) as conn:
        conn.execute(insert(s.feeds), feeds)
        for start in range(0, n, batch):
            ids = range(start + 1, min(n, start + batch) + 1)
            t = [now - (n - i) * 60.0 for i in ids]  # one a minute: 100,000 over ~69 days
            conn.execute(
                insert(s.stories),
                [
                    {"id": i, "title": f"Story {i}", "created_at": t[k], "updated_at": t[k]}
                    for k, i in enumerate(ids)
                ],
            )
            conn.execute(
                insert(s.articles),
                [
                    {
                        "id": i,
                        "feed_id": i % 50 + 1,
                        "guid": f"g{i}",
                        "url": f"https://news{i % 50}.example/a/{i}",
                        "title": f"Article {i} about {RULES[i % 5]}",
                        "summary": "Summary text " * 5,
                        "body": "Body text. " * 200,
                        "authors": "[]",
                        "tags": "[]",
                        "published": t[k] - 300,
                        "fetched_at": t[k],
                        "story_id": i,
                        "story_reason": "new",
                    }
                    for k, i in enumerate(ids)
                ],
            )
            conn.execute(
                insert(s.matches),
                [
                    {
                        "article_id": i,
                        "rule": RULES[i % 5],
                        "created_at": t[k],
                        "explanation": json.dumps(
                            [
                                {
                                    "field": "title",
                                    "leaf": RULES[i % 5],
                                    "text": RULES[i % 5],
                                    "start": 17,
                                    "end": 17 + len(RULES[i % 5]),
                                }
                            ]
                        ),
                    }
                    for k, i in enumerate(ids)
                ],
            )
            conn.execute(
                insert(s.alerts),
                [
                    {
                        "id": i,
                        "key": f"k{i}",
                        "rule": RULES[i % 5],
                        "story_id": i,
                        "article_id": i,
                        "severity": SEVERITIES[i % 4],
                        "status": "sent",
                        "message": message,
                        "created_at": t[k],
                    }
                    for k, i in enumerate(ids)
                ],
            )
            conn.execute(
                insert(s.deliveries),
                [
                    {
                        "alert_id": i,
                        "channel": "desk",
                        "kind": "alert",
                        "idempotency_key": f"k{i}:desk",
                        "status": "dead" if i % 10 == 0 else "sent",
                        "attempts": 1,
                        "next_attempt_at": t[k],
                        "payload": message,
                        "created_at": t[k],
                        "sent_at": t[k],
                    }
                    for k, i in enumerate(ids)
                ],
            )


def serve(console: Console) -> tuple[WebServer, threading.Thread]:
    server = WebServer(console, "127.0.0.1:0")
    ready = threading.Event()

    async def main() -> None:
        await server.start()
        ready.set()
        assert server.task is not None
        await server.task

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    ready.wait(30)
    return server, thread


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--alerts", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "monitor.yaml"
        cfg.write_text(f"""
database: sqlite:///{tmp}/bench.db
rules:
{chr(10).join(f"  - {{name: {r}, query: {r}}}" for r in RULES)}
web:
  users: {{bench: {{token: "{TOKEN}", role: read}}}}
""")
        checked = compile_settings(load_config(cfg))
        store = Store(checked.settings.database)
        started = time.perf_counter()
        fill(store, args.alerts, time.time())
        print(
            f"stored {args.alerts:,} alerts in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )

        async def snapshot() -> dict[str, object]:
            return {
                "feeds": {"ok": 50},
                "deliveries": await asyncio.to_thread(store.outbox.stats, time.time()),
                "counters": {},
                "last_tick_age": 0.0,
            }

        console = Console(
            store=store,
            settings=lambda: checked.settings,
            ruleset=lambda: checked.ruleset,
            snapshot=snapshot,
            metrics=Metrics(),
        )
        server, thread = serve(console)
        base = f"http://127.0.0.1:{server.port}"
        mid = args.alerts // 2
        old = time.time() - 400 * 86400  # before the first alert
        cases = [
            ("GET /alerts (page, newest 50)", "/alerts"),
            ("GET /alerts?rule=ports", "/alerts?rule=ports"),
            (
                "GET /alerts?severity=high&channel_status=dead",
                "/alerts?severity=high&channel_status=dead",
            ),
            (
                "GET /alerts?severity=critical&channel_status=dead (none)",
                "/alerts?severity=critical&channel_status=dead",
            ),
            (
                "GET /alerts?rule=ports&channel_status=dead (none)",
                "/alerts?rule=ports&channel_status=dead",
            ),
            ("GET /alerts?channel_status=pending (none)", "/alerts?channel_status=pending"),
            (f"GET /alerts?until={old:.0f} (none)", f"/alerts?until={old:.0f}"),
            (f"GET /alerts?before={mid}", f"/alerts?before={mid}"),
            ("GET /api/v1/alerts", "/api/v1/alerts"),
            ("GET /api/v1/alerts?rule=ports", "/api/v1/alerts?rule=ports"),
            ("GET /api/v1/alerts?channel_status=dead", "/api/v1/alerts?channel_status=dead"),
            (
                "GET /api/v1/alerts?severity=critical&channel_status=dead (none)",
                "/api/v1/alerts?severity=critical&channel_status=dead",
            ),
            (
                f"GET /api/v1/alerts?before={mid}&limit=100",
                f"/api/v1/alerts?before={mid}&limit=100",
            ),
            (f"GET /api/v1/alerts/{mid}", f"/api/v1/alerts/{mid}"),
            (f"GET /alerts/{mid} (page)", f"/alerts/{mid}"),
            ("GET /api/v1/rules (first: counts every day)", "/api/v1/rules"),
            ("GET /api/v1/rules", "/api/v1/rules"),
            ("GET /rules (page)", "/rules"),
            (f"GET /api/v1/stories/{mid}", f"/api/v1/stories/{mid}"),
            (f"GET /api/v1/alerts/{mid}/feedback", f"/api/v1/alerts/{mid}/feedback"),
            ("GET /api/v1/feeds", "/api/v1/feeds"),
            ("GET /sources (page)", "/sources"),
            ("GET /api/v1/deliveries (10,000 dead)", "/api/v1/deliveries"),
            (
                "GET /api/v1/deliveries?status=dead&limit=500",
                "/api/v1/deliveries?status=dead&limit=500",
            ),
            ("GET /deliveries (page)", "/deliveries"),
            ("GET /api/v1/openapi.json", "/api/v1/openapi.json"),
            ("GET /login (page)", "/login"),
            ("GET /healthz", "/healthz"),
            ("GET /metrics", "/metrics"),
        ]
        rows = []
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        ) as client:
            for name, path in cases:
                times = []
                first = name.endswith("(first: counts every day)")
                for i in range(1 if first else args.repeat + 2):
                    t0 = time.perf_counter()
                    res = client.get(path)
                    dt = (time.perf_counter() - t0) * 1000
                    if res.status_code != 200:
                        raise SystemExit(f"{path}: {res.status_code} {res.text[:200]}")
                    if i >= 2 or first:  # two warm-up requests (none for a first request)
                        times.append(dt)
                times.sort()
                print(f"  {name}: {statistics.median(times):.1f} ms", file=sys.stderr)
                rows.append(
                    (
                        name,
                        statistics.median(times),
                        times[max(0, int(len(times) * 0.95) - 1)],
                        len(res.content),
                    )
                )
        server.server.should_exit = True  # type: ignore[union-attr]
        thread.join(10)
        store.close()
    print(
        f"{args.alerts:,} alerts stored, {args.repeat} requests each (ms, over HTTP on 127.0.0.1)"
    )
    print(f"{'request':<62} {'median':>8} {'p95':>8} {'bytes':>9}")
    for name, med, p95, size in rows:
        flag = "" if med < 100 else "  over 100 ms"
        print(f"{name:<62} {med:8.1f} {p95:8.1f} {size:9,}{flag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
