"""Several nodes on one PostgreSQL: two `monitor run` processes share the feeds and the
outbox through leases, and every alert is sent exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from feedserver import Item, NewsSite
from receivers import WebhookReceiver

ROOT = Path(__file__).resolve().parents[1]
FEEDS = 30


def test_two_nodes_share_the_work_and_alert_once(tmp_path: Path, pg_url: str) -> None:
    with NewsSite() as site, WebhookReceiver() as hook:
        for i in range(FEEDS):
            site.feed(
                f"/feed{i}.xml",
                [
                    Item(
                        f"Zebra sighting number {i} reported in district {i}",
                        f"/a/{i}.html",
                        f"z{i}",
                        f"Report {i}.",
                    )
                ],
            )
        feeds = "\n".join(
            f'  - {{url: "{site.url}/feed{i}.xml", allow_private: true}}' for i in range(FEEDS)
        )
        cfg = tmp_path / "monitor.yaml"
        cfg.write_text(f"""
database: {pg_url}
defaults: {{interval: 1h, extract: false, channels: [hook]}}
daemon: {{tick: 0.2s, deliver_every: 0.2s, feed_batch: 3}}
feeds:
{feeds}
rules:
  - {{name: zebras, query: 'title:zebra*'}}
channels:
  hook: {{type: webhook, url: "{hook.url}", allow_private: true}}
""")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        logs = [open(tmp_path / f"node{n}.log", "w") for n in range(2)]  # noqa: SIM115
        nodes = [
            subprocess.Popen(
                [sys.executable, "-m", "monitor", "run", "--config", str(cfg)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
            )
            for log in logs
        ]
        try:
            hook.wait_for(FEEDS, timeout=90)
            time.sleep(1.5)  # room for a duplicate to show up, if there were one
        finally:
            for node in nodes:
                node.send_signal(signal.SIGTERM)
            codes = [node.wait(timeout=30) for node in nodes]
            for log in logs:
                log.close()
        keys = [r.headers["idempotency-key"] for r in hook.received]
        titles = sorted(r.json()["title"] for r in hook.received)
    assert codes == [0, 0]
    assert len(keys) == FEEDS == len(set(keys))
    assert titles == sorted(
        f"Zebra sighting number {i} reported in district {i}" for i in range(FEEDS)
    )
    # Both nodes took part: each logged alerts it committed.
    worked = [(tmp_path / f"node{n}.log").read_text().count("alert zebras") for n in range(2)]
    assert sum(worked) == FEEDS, worked
