"""Alert delivery: outbox throughput, and the time from a feed item to its webhook alert.

    python bench/bench_delivery.py                  # both parts (about 1.5 minutes)
    python bench/bench_delivery.py --deliveries 1000 --items 30

Part 1, throughput. N alert deliveries are queued in a SQLite outbox (WAL, `synchronous=FULL`,
as the store always opens it), then the daemon's own `Deliverer` drains them (claim a batch
with a lease, send each, record each outcome in its own transaction) to a loopback webhook
receiver that answers 200 at once. The receiver runs in its own process (a ThreadingHTTPServer,
like a small real receiver), so the monitor's process is measured alone. Rows: one channel or
four (channels send side by side, each in order), and the batch size.

Part 2, latency. `monitor run` runs as a subprocess with one loopback feed (`interval: 1s`,
`min_interval: 1s`, `extract: false`), a rule that matches every test item, a webhook channel,
and the daemon ticking every 0.2 s (feeds and deliveries). An item is added to the feed every
1.0-1.6 s (random, so it lands at every phase of the poll cycle); the time from the item being
served to the webhook receiving its alert is measured in this process (one clock). The floor is
the poll interval: an item waits up to 1 s for the next poll.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from feedserver import Item, NewsSite  # noqa: E402
from receivers import WebhookReceiver  # noqa: E402

from monitor.config import DeliverySettings, WebhookChannel  # noqa: E402
from monitor.delivery import Deliverer  # noqa: E402
from monitor.notify import AlertMessage, build_channel  # noqa: E402
from monitor.store import Enqueue, Store, enqueue  # noqa: E402
from monitor.store.engine import write_tx  # noqa: E402

# The corpora folder: $MONITOR_CORPORA, else ../shared/corpora beside the checkout.
CORPORA = Path(os.environ.get("MONITOR_CORPORA") or ROOT.parent / "shared" / "corpora")
AG_NEWS = CORPORA / "news" / "ag_news" / "train_subset.csv"


# --------------------------------------------------------------------------- part 1


def _serve(port_out: Synchronized[int], count: Synchronized[int]) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real receivers offer

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in two writes: without this, Nagle's algorithm and the
            # client's delayed ACK add 40 ms to every answer on a kept-alive connection.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with count.get_lock():
                count.value += 1
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port_out.value = int(server.server_address[1])
    server.serve_forever()


def alert(i: int, channel: str) -> dict[str, Any]:
    key = f"bench-{i}:{channel}"
    return AlertMessage(
        kind="alert",
        idempotency_key=key,
        alert_id=i,
        rule="bench",
        severity="high",
        title=f"Benchmark alert number {i}: rockets fired at a US base in western Iraq",
        url=f"https://news.example.org/{i}",
        source="Bench News",
        published=None,
        snippet="Several rockets were fired at a US base in western Iraq on Monday morning.",
        highlights=[(8, 15)],
        story_id=i,
        sources=[{"feed": "Bench News", "url": f"https://news.example.org/{i}", "title": "t"}],
        why=[{"field": "body", "leaf": "rocket*", "text": "rockets", "start": 8, "end": 15}],
        created_at=datetime.now(UTC),
    ).to_dict()


async def drain(url: str, n: int, channels: int, batch: int) -> tuple[float, int]:
    """Queue `n` deliveries over `channels` channels, drain them; (seconds, sent)."""
    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/bench.db")
        names = [f"hook{c}" for c in range(channels)]
        with write_tx(store.engine) as conn:
            for i in range(n):
                ch = names[i % channels]
                enqueue(
                    conn,
                    Enqueue(channel=ch, kind="alert", key=f"bench-{i}:{ch}"),
                    payload=alert(i, ch),
                    now=time.time(),
                )
        async with httpx.AsyncClient(trust_env=False) as client:
            chans = {
                name: build_channel(
                    name,
                    WebhookChannel(type="webhook", url=url, allow_private=True, secret="s3cret"),
                    client=client,
                )
                for name in names
            }
            deliverer = Deliverer(store.outbox, chans, DeliverySettings(batch=batch), owner="b")
            t0 = time.perf_counter()
            while await deliverer.run_once():
                pass
            elapsed = time.perf_counter() - t0
        sent = store.outbox.stats(time.time())["by_status"].get("sent", 0)
        store.close()
    return elapsed, int(sent)


def part1(n: int) -> list[tuple[str, ...]]:
    ctx = multiprocessing.get_context("spawn")
    port = ctx.Value("i", 0)
    count = ctx.Value("i", 0)
    proc = ctx.Process(target=_serve, args=(port, count), daemon=True)
    proc.start()
    while port.value == 0:
        time.sleep(0.01)
    url = f"http://127.0.0.1:{port.value}/"
    rows = []
    try:
        for channels, batch in ((1, 50), (1, 200), (4, 50)):
            before = count.value
            elapsed, sent = asyncio.run(drain(url, n, channels, batch))
            got = count.value - before
            rows.append(
                (
                    str(channels),
                    str(batch),
                    f"{n:,}",
                    f"{elapsed:.1f}",
                    f"{sent / elapsed:,.0f}",
                    f"{elapsed / sent * 1000:.2f}",
                    f"{got:,}",
                )
            )
    finally:
        proc.terminate()
    return rows


# --------------------------------------------------------------------------- part 2


def ag_texts(n: int) -> list[str]:
    import csv

    with AG_NEWS.open(encoding="utf-8", newline="") as f:
        return [row["text"] for _, row in zip(range(n), csv.DictReader(f), strict=False)]


def part2(items: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    texts = ag_texts(items)
    with tempfile.TemporaryDirectory() as tmp, NewsSite() as site, WebhookReceiver() as hook:
        feed: list[Item] = []
        site.feed("/feed.xml", feed)
        cfg = Path(tmp) / "monitor.yaml"
        cfg.write_text(f"""
database: sqlite:///{tmp}/monitor.db
log_level: WARNING
defaults: {{interval: 1s, min_interval: 1s, extract: false, channels: [hook]}}
fetch: {{workers: 1}}
daemon: {{tick: 0.2s, deliver_every: 0.2s}}
feeds:
  - {{url: "{site.url}/feed.xml", name: Bench News, allow_private: true}}
rules: [{{name: bench, query: zebulon}}]
channels:
  hook: {{type: webhook, url: "{hook.url}", allow_private: true}}
""")
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(cfg)],
            cwd=ROOT,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(4)  # start-up, first (empty) polls
            published: dict[str, float] = {}
            for i in range(items):
                title = f"Zebulon {i}: {texts[i][:80]}"
                feed.insert(0, Item(title, f"/news/{i}", f"item-{i}", texts[i]))
                site.feed("/feed.xml", feed[:50])
                published[f"{site.url}/news/{i}"] = time.monotonic()
                time.sleep(rng.uniform(1.0, 1.6))
            hook.wait_for(items, timeout=60)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    arrived = {r.json()["url"]: r.at for r in hook.received}
    lat = sorted(arrived[u] - t for u, t in published.items())
    return {
        "n": len(lat),
        "median": statistics.median(lat),
        "p99": lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))],
        "min": lat[0],
        "max": lat[-1],
    }


# --------------------------------------------------------------------------- main


def table(headers: list[str], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--deliveries", type=int, default=2000)
    ap.add_argument("--items", type=int, default=50)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    load = os.getloadavg()[0]
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load average {load:.1f}\n"
    )
    print("Part 1: outbox throughput to a loopback webhook (SQLite, synchronous=FULL)\n")
    print(
        table(
            ["channels", "batch", "deliveries", "seconds", "deliveries/s", "ms each", "received"],
            part1(args.deliveries),
        )
    )
    print(f"\nPart 2: feed item -> webhook alert, `monitor run`, 1 s poll ({args.items} items)\n")
    r = part2(args.items, args.seed)
    print(
        table(
            ["items", "median s", "p99 s", "min s", "max s"],
            [
                (
                    f"{r['n']:.0f}",
                    f"{r['median']:.2f}",
                    f"{r['p99']:.2f}",
                    f"{r['min']:.2f}",
                    f"{r['max']:.2f}",
                )
            ],
        )
    )


if __name__ == "__main__":
    main()
