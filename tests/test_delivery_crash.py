"""Crash safety of the outbox: `monitor run` SIGKILLed at random moments loses no alert.

A loopback feed publishes 200 matching items at once; a slow webhook receiver (20-50 ms a
request) takes the burst. The daemon is killed with SIGKILL at moments drawn from a seeded RNG
(counted from its /healthz answering 200), restarted, killed again, and finally left to finish.
Every one of the 200 alerts must arrive; the only duplicates allowed are repeats of a request
the receiver already had (the same idempotency key: a crash between sending and recording),
never a second alert for one item.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from daemons import free_port, get, start_daemon, stop_daemon, wait_for
from feedserver import NewsSite
from receivers import Action, Request, Respond, WebhookReceiver
from test_delivery import news_items, write_config

from monitor.store import Store

pytestmark = pytest.mark.slow

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


def start_up(cfg: Path, log: Path, port: int) -> subprocess.Popen[bytes]:
    """A daemon that answers /healthz (its scheduler ticks). Kill moments are counted from
    then on: counted from the process's start they fell, on a loaded machine, while Python was
    still importing. (Not /readyz: that wants the worker pool up, which starts on the first
    feed to parse, and a restarted daemon may have none.)"""
    proc = start_daemon(cfg, log)

    def up() -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            return get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        except OSError:
            return False

    try:
        wait_for(up, timeout=120, what="/healthz")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


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
        port = free_port()
        daemon = "daemon: {tick: 0.2s, deliver_every: 0.2s"
        cfg.write_text(
            cfg.read_text().replace(daemon, f'{daemon}, health_listen: "127.0.0.1:{port}"')
        )
        kills = []
        for _ in range(KILLS_PER_ROUND):
            before = len(hook.requests)
            proc = start_up(cfg, log, port)
            # Killed once this run has made a seeded number of requests, a few milliseconds
            # on: inside a request or between two, with a batch leased; a quarter of the draws
            # are 0, a kill during the poll and its commit. Counted in requests, not seconds,
            # so that a loaded machine (slow to start, slow to commit) cannot move every kill
            # out of the burst; three runs of at most 60 leave the last run some to deliver.
            more = max(0, rng.randint(-20, 60))
            try:
                wait_for(
                    lambda p=proc, n=before + more: len(hook.requests) >= n or p.poll() is not None,
                    timeout=120,
                    what=f"{more} requests of this run",
                )
                time.sleep(rng.uniform(0.0, 0.05))
            finally:
                proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=10) == -signal.SIGKILL, log.read_text()[-2000:]
            kills.append((more, len(hook.received)))
        proc = start_daemon(cfg, log)
        try:
            urls = {f"{site.url}{it.path}" for it in items}
            # Generous: the burst's deliveries, one at a time, each a commit, crawl on a
            # loaded machine; a lost alert never arrives however long the wait.
            deadline_ok = _wait_for_urls(hook, urls, timeout=180)
        finally:
            rc = stop_daemon(proc, timeout=30)
        assert deadline_ok, log.read_text()[-3000:]
        assert rc == 0, log.read_text()[-3000:]

    by_key = Counter(r.headers["idempotency-key"] for r in hook.received)
    keys_of_url: dict[str, set[str]] = {}
    for r in hook.received:
        keys_of_url.setdefault(r.json()["url"], set()).add(r.headers["idempotency-key"])
    repeats = {k: n for k, n in by_key.items() if n > 1}
    print(
        f"round {round_}: kills (after n requests, alerts received by then) {kills}; "
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
