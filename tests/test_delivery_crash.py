"""Crash safety of the outbox: `monitor run` SIGKILLed at random moments loses no alert.

A loopback feed publishes 200 matching items at once; a slow webhook receiver (20-50 ms a
request) takes the burst. The daemon is killed with SIGKILL at moments drawn from a seeded RNG,
restarted, killed again, and finally left to finish. Every one of the 200 alerts must arrive;
the only duplicates allowed are repeats of a request the receiver already had (the same
idempotency key: a crash between sending and recording), never a second alert for one item.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from feedserver import NewsSite
from receivers import Action, Request, Respond, WebhookReceiver
from test_delivery import news_items, write_config

from monitor.store import Store

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ALERTS = 200
ROUNDS = 3
KILLS_PER_ROUND = 3


class SlowReceiver(WebhookReceiver):
    """Accepts everything, taking 20-50 ms (seeded) per request."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.rng = random.Random(seed)

    def answer(self, request: Request) -> Action:
        with self._lock:
            delay = self.rng.uniform(0.02, 0.05)
        return Respond(200, b"ok", delay=delay)


def start(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=out,
            cwd=ROOT,
        )


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_sigkill_during_a_burst_loses_no_alert(tmp_path: Path, round_: int) -> None:
    rng = random.Random(1000 + round_)
    log = tmp_path / "monitor.log"
    items = news_items(ALERTS)
    with NewsSite() as site, SlowReceiver(seed=round_) as hook:
        site.feed("/feed.xml", items)
        cfg = write_config(
            tmp_path,
            site,
            channels=f'  hook: {{type: webhook, url: "{hook.url}", allow_private: true}}\n',
            delivery="{backoff_base: 0.2s, backoff_max: 1s, lease: 2s, batch: 10, concurrency: 1}",
        )
        kills = []
        for _ in range(KILLS_PER_ROUND):
            proc = start(cfg, log)
            at = rng.uniform(1.0, 3.5)
            try:
                proc.wait(timeout=at)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=10) == -signal.SIGKILL, log.read_text()[-2000:]
            kills.append((round(at, 2), len(hook.received)))
        proc = start(cfg, log)
        try:
            urls = {f"{site.url}{it.path}" for it in items}
            deadline_ok = _wait_for_urls(hook, urls, timeout=60)
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=30)
        assert deadline_ok, log.read_text()[-3000:]
        assert rc == 0, log.read_text()[-3000:]

    by_key = Counter(r.headers["idempotency-key"] for r in hook.received)
    keys_of_url: dict[str, set[str]] = {}
    for r in hook.received:
        keys_of_url.setdefault(r.json()["url"], set()).add(r.headers["idempotency-key"])
    repeats = {k: n for k, n in by_key.items() if n > 1}
    print(
        f"round {round_}: kills (after s, alerts received by then) {kills}; "
        f"{len(hook.received)} requests accepted for {ALERTS} alerts; "
        f"{sum(repeats.values()) - len(repeats)} same-key repeats of {len(repeats)} alerts"
    )
    assert set(keys_of_url) == urls  # every alert arrived
    assert all(len(ks) == 1 for ks in keys_of_url.values())  # one alert, one key, per item
    assert len(by_key) == ALERTS
    store = Store(f"sqlite:///{tmp_path}/monitor.db")
    try:
        stats = store.outbox.stats(0)
    finally:
        store.close()
    assert stats["by_status"] == {"sent": ALERTS}


def _wait_for_urls(hook: WebhookReceiver, urls: set[str], *, timeout: float) -> bool:
    """Wait until the receiver accepted an alert for every article URL."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with hook._lock:
            got = {r.json()["url"] for r in hook.received}
        if urls <= got:
            return True
        time.sleep(0.1)
    return False
