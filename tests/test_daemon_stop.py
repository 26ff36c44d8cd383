"""The stop sequence (monitor/daemon.py `Daemon._stop`): SIGTERM during a slow delivery.

A real `monitor run` process delivers one alert to a slow loopback webhook receiver and gets
SIGTERM while the request is in flight. Within `daemon.stop_grace` the delivery finishes and
is marked sent, once (and the ticks during that long round log no "maximum number of running
instances reached" warning); slower than the grace, it is cut, its claim given back at once (no
lease left for another node to wait out) and it is sent once after the restart.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from daemons import start_daemon
from feedserver import NewsSite
from receivers import Respond, WebhookReceiver
from sqlalchemy import select
from test_delivery import hook_channel, news_items, write_config

from monitor.store import Store
from monitor.store import schema as s
from monitor.store.engine import read_tx

pytestmark = pytest.mark.slow


def _config(tmp: Path, site: NewsSite, hook: WebhookReceiver, grace: str) -> Path:
    cfg = write_config(tmp, site, channels=hook_channel("hook", hook, ", timeout: 30s"))
    text = cfg.read_text().replace(
        "daemon: {tick: 0.2s, deliver_every: 0.2s}",
        f"daemon: {{tick: 0.2s, deliver_every: 0.2s, stop_grace: {grace}}}",
    )
    cfg.write_text(text)
    return cfg


def _rows(tmp: Path) -> tuple[list[tuple[str, int, str | None]], list[str | None]]:
    store = Store(f"sqlite:///{tmp}/monitor.db")
    try:
        with read_tx(store.engine) as conn:
            deliveries = [
                (str(r.status), int(r.attempts), r.lease_owner)
                for r in conn.execute(
                    select(
                        s.deliveries.c.status, s.deliveries.c.attempts, s.deliveries.c.lease_owner
                    )
                )
            ]
            feeds = list(conn.execute(select(s.feeds.c.lease_owner)).scalars())
    finally:
        store.close()
    return deliveries, feeds


def _sigterm(proc: subprocess.Popen[bytes], log: Path, timeout: float) -> float:
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=timeout) == 0, log.read_text()[-3000:]
    return time.monotonic() - start


def test_sigterm_lets_a_delivery_in_flight_finish(tmp_path: Path) -> None:
    log = tmp_path / "monitor.log"
    with NewsSite() as site, WebhookReceiver(Respond(200, b"ok", delay=4.0)) as hook:
        site.feed("/feed.xml", news_items(1))
        cfg = _config(tmp_path, site, hook, "10s")
        proc = start_daemon(cfg, log)
        try:
            hook.wait_for(1, timeout=60)  # the post is in flight (the receiver takes 4 s)
            time.sleep(2.0)  # a long round: ten `deliver_every` ticks find it still running
        except BaseException:
            proc.kill()
            raise
        took = _sigterm(proc, log, timeout=30)
        assert len(hook.requests) == 1
    deliveries, feeds = _rows(tmp_path)
    assert deliveries == [("sent", 1, None)], log.read_text()[-3000:]
    assert feeds == [None]  # no feed lease left either
    assert 0.5 < took < 10.0  # it waited for the post, not for the whole grace
    text = log.read_text()
    assert "Traceback" not in text
    # The round outlasted ten `deliver_every` ticks: none of them logged a warning.
    assert "maximum number of running instances" not in text


def test_a_delivery_slower_than_the_grace_is_given_back_and_sent_once_after_restart(
    tmp_path: Path,
) -> None:
    log = tmp_path / "monitor.log"
    with NewsSite() as site, WebhookReceiver() as hook:
        hook.script(Respond(200, b"ok", delay=8.0))  # the first post outlasts the grace
        site.feed("/feed.xml", news_items(1))
        cfg = _config(tmp_path, site, hook, "1s")
        proc = start_daemon(cfg, log)
        try:
            hook.wait_for(1, timeout=60)
        except BaseException:
            proc.kill()
            raise
        took = _sigterm(proc, log, timeout=30)
        assert took < 6.0  # the grace, then cancelled: not the receiver's 8 s
        deliveries, feeds = _rows(tmp_path)
        # Given back untried: no lease for another node to wait out, no attempt counted.
        assert deliveries == [("pending", 0, None)], log.read_text()[-3000:]
        assert feeds == [None]
        assert "still running after the 1 s stop grace" in log.read_text()

        proc = start_daemon(cfg, log)
        try:
            hook.wait_for(2, timeout=60)  # sent again at once after the restart
            deadline = time.monotonic() + 20
            while _rows(tmp_path)[0][0][0] != "sent" and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1.0)  # a second send would have arrived by now
        finally:
            _sigterm(proc, log, timeout=30)
        keys = {r.headers["idempotency-key"] for r in hook.requests}
        assert len(hook.requests) == 2  # the cut post and the one after the restart
    assert len(keys) == 1  # the same delivery, so receivers can drop the repeat
    deliveries, _ = _rows(tmp_path)
    assert deliveries == [("sent", 1, None)]
