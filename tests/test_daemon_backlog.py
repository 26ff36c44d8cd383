"""`monitor run` works off a backlog of due feeds at the pipeline's speed.

Every healthy feed is due when the daemon starts. The daemon's poll loop must lease as fast as
polls finish, not `feed_batch` feeds per tick: with the tick and batch below, a lease per tick
would need 150 / 4 * 5 s = over three minutes for these feeds.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest
from daemons import start_daemon, stop_daemon
from feedserver import Item, NewsSite
from receivers import free_port

FEEDS = 150

pytestmark = pytest.mark.slow


def test_run_polls_a_backlog_of_due_feeds_without_waiting_for_ticks(tmp_path: Path) -> None:
    with NewsSite() as site:
        for i in range(FEEDS):
            site.feed(
                f"/f/{i}.xml",
                [Item(f"Story {i} item {j}", f"/a/{i}-{j}.html", f"g-{i}-{j}") for j in range(3)],
            )
        port = free_port()
        feeds = "\n".join(
            f'  - {{url: "{site.url}/f/{i}.xml", name: "feed {i}", allow_private: true}}'
            for i in range(FEEDS)
        )
        cfg = tmp_path / "monitor.yaml"
        cfg.write_text(f"""
database: sqlite:///{tmp_path}/monitor.db
defaults: {{interval: 1h, extract: false}}
daemon: {{tick: 5s, feed_batch: 4, health_listen: "127.0.0.1:{port}"}}
feeds:
{feeds}
""")
        proc = start_daemon(cfg, tmp_path / "run.log")
        try:
            deadline = time.monotonic() + 60
            polled: set[str] = set()
            while time.monotonic() < deadline:
                polled = {p for p in list(site.hits) if p.startswith("/f/")}
                if len(polled) == FEEDS:
                    break
                assert proc.poll() is None, (tmp_path / "run.log").read_text()
                time.sleep(0.1)
            started = time.monotonic()
            assert len(polled) == FEEDS, f"only {len(polled)} of {FEEDS} feeds polled in 60 s"
            # Every poll is recorded (polls that stored entries commit with them; the others
            # within a second): /healthz sees all feeds healthy, none polled twice.
            health: dict[str, object] = {}
            while time.monotonic() < started + 10:
                health = json.loads(
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()
                )
                if health.get("feeds") == {"ok": FEEDS}:
                    break
                time.sleep(0.2)
            assert health.get("feeds") == {"ok": FEEDS}, health
            assert max(site.hits[f"/f/{i}.xml"] for i in range(FEEDS)) == 1
            # Each poll's outcome reaches the daemon's counters.
            metrics = (
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
                .read()
                .decode()
            )
            assert f'monitor_polls_total{{kind="new"}} {FEEDS}' in metrics, metrics
        finally:
            rc = stop_daemon(proc, timeout=30)
        text = (tmp_path / "run.log").read_text()
        assert rc == 0, text
        assert "Traceback" not in text, text
