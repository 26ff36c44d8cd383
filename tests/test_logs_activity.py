"""What the daemon's log says: a DEBUG line per poll, and at INFO a periodic summary.

`monitor run` runs as a subprocess with `log_format: json` against a loopback feed and webhook;
its standard error is read line by line as JSON objects (see monitor/logs.py).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from feedserver import NewsSite
from receivers import WebhookReceiver
from test_delivery import news_items

from monitor.activity import Totals, summary

ROOT = Path(__file__).resolve().parents[1]


def run_daemon(cfg: Path, done: Any, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Run `monitor run` until `done(records)` holds, stop it with SIGTERM, return its log."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "--config", str(cfg)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        cwd=ROOT,
    )
    records: list[dict[str, Any]] = []
    assert proc.stderr is not None
    reader = threading.Thread(
        target=lambda: records.extend(json.loads(line) for line in proc.stderr or []),
        daemon=True,
    )
    reader.start()
    try:
        deadline = time.monotonic() + timeout
        while not done(records) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        reader.join(timeout=10)
    assert done(records), records
    return records


def summed(records: list[dict[str, Any]]) -> dict[str, int]:
    """The summary lines' counts, added up over the run."""
    text = " | ".join(r["message"] for r in records if r["message"].startswith("last "))
    keys = ("polls", "unchanged", r"failed\)", "new entries", "alerts", "deliveries sent")
    found = {key: sum(int(n) for n in re.findall(rf"(\d+) {key}", text)) for key in keys}
    found["failed"] = found.pop(r"failed\)")
    return found


def test_debug_says_what_each_poll_did_and_info_sums_up_periodically(tmp_path: Path) -> None:
    with NewsSite() as site, WebhookReceiver() as hook:
        site.feed("/feed.xml", news_items(3))
        cfg = tmp_path / "monitor.yaml"
        cfg.write_text(f"""
database: sqlite:///{tmp_path}/monitor.db
log_level: DEBUG
log_format: json
defaults: {{interval: 1s, min_interval: 1s, extract: false, channels: [hook]}}
daemon: {{tick: 0.2s, deliver_every: 0.2s, summary_every: 1s}}
feeds:
  - {{url: "{site.url}/feed.xml", name: Loopback News, allow_private: true}}
rules: [{{name: zebulon, query: zebulon}}]
channels:
  hook: {{type: webhook, url: "{hook.url}", allow_private: true}}
""")

        def polls(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [r for r in records if r["message"].startswith("poll Loopback News: ")]

        def done(records: list[dict[str, Any]]) -> bool:
            seen_304 = any("304" in r["message"] for r in polls(records))
            found = summed(records)
            return seen_304 and found["deliveries sent"] == 3 and found["unchanged"] >= 1

        records = run_daemon(cfg, done)
    first, *later = polls(records)
    assert first["level"] == "DEBUG" and first["feed"] == f"{site.url}/feed.xml"
    assert re.fullmatch(
        r"poll Loopback News: HTTP 200, 3 entries, 3 new, 3 alerts "
        r"\(fetch \d+ ms, parse \d+ ms, articles \d+ ms, commit \d+ ms\)",
        first["message"],
    ), first
    assert any(
        re.fullmatch(
            r"poll Loopback News: HTTP 304 not modified \(fetch \d+ ms, commit \d+ ms\)",
            r["message"],
        )
        for r in later
    ), later
    summaries = [r for r in records if r["message"].startswith("last ")]
    assert all(r["level"] == "INFO" and r["logger"] == "monitor.daemon" for r in summaries)
    # Over the run the summaries add up to what happened: 3 new entries, 3 alerts, 3 sent.
    found = summed(records)
    assert (found["new entries"], found["alerts"], found["deliveries sent"]) == (3, 3, 3)
    assert found["polls"] >= 2 and found["unchanged"] >= 1 and found["failed"] == 0
    # INFO stays quiet: no line per delivery or per poll at INFO.
    info = [r for r in records if r["level"] == "INFO" and "rule" not in r]
    assert not [r for r in info if r["message"].startswith(("sent ", "poll "))], info


def test_the_summary_is_the_difference_since_the_last_one() -> None:
    before = Totals({"new": 2, "failed": 1}, new=5, alerts=1, deliveries={"sent": 1})
    now = Totals(
        {"new": 3, "not_modified": 4, "failed": 2},
        new=7,
        alerts=2,
        deliveries={"sent": 3, "failed": 2, "dead": 1},
    )
    assert summary(before, now, 300) == (
        "last 5 min: 6 polls (4 unchanged, 1 failed), 2 new entries, 1 alerts, "
        "2 deliveries sent, 3 failed (1 dead)"
    )
    assert summary(Totals(), Totals(), 30).startswith("last 30 s: 0 polls")
