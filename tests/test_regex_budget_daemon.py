"""The real daemon under a feed of regex-killing entries: it keeps answering and polling.

One loopback server serves a "killer" feed whose every poll brings 40 new entries built to make
a rule's regex backtrack exponentially (`(a|aa)+$` on 'aaaa…!' in title, summary and author),
and a healthy feed polled every second. `python -m monitor run` matches a rule using that
regex. Throughout, a client asks `/healthz` every 200 ms: each answer must come within 1 s; the
healthy feed must keep being polled on time; the slow rule must be named in /healthz, in
`monitor status` and once in the log (not once per article).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.hostile_server import HostileServer, RequestHandler, fixed, send
from tests.receivers import free_port

ROOT = Path(__file__).resolve().parents[1]
KILLER = "a" * 60 + "!"
ENTRIES = 40
RUN_FOR = 12.0

pytestmark = pytest.mark.slow


class KillerFeed:
    """Every request: ENTRIES entries never seen before, each a regex bomb."""

    def __init__(self) -> None:
        self.polls = itertools.count()
        self.served = 0

    def __call__(self, handler: RequestHandler) -> None:
        n = next(self.polls)
        items = "".join(
            f"<item><title>{KILLER}</title><description>{KILLER}</description>"
            f"<author>{KILLER}</author><guid isPermaLink='false'>k{n}-{i}</guid></item>"
            for i in range(ENTRIES)
        )
        body = f"<rss version='2.0'><channel><title>Killer</title>{items}</channel></rss>"
        self.served += 1
        send(handler, 200, body.encode(), {"Content-Type": "application/rss+xml"})


def _healthz(port: int) -> tuple[float, dict[str, object] | None]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            body = json.loads(r.read())
    except OSError:
        body = None
    return time.monotonic() - started, body


def _exhausted(bodies: list[dict[str, object]]) -> int:
    """How many articles ran out of the backtracker's budget, by the last /healthz answer."""
    if not bodies:
        return 0
    counts = bodies[-1]["counters"]["regex_budget_exhausted"]  # type: ignore[index]
    return int(counts.get("backtracker", 0))


def test_healthz_and_a_healthy_feed_stay_on_time_under_regex_bombs(tmp_path: Path) -> None:
    health_port = free_port()
    killer = KillerFeed()
    with HostileServer() as srv:
        srv.routes["/killer"] = killer
        srv.routes["/healthy"] = fixed(
            200,
            b"<rss version='2.0'><channel><title>Calm</title><item><title>Calm day</title>"
            b"<guid isPermaLink='false'>calm-1</guid></item></channel></rss>",
            Content_Type="application/rss+xml",
        )
        cfg = tmp_path / "monitor.yaml"
        cfg.write_text(f"""
database: sqlite:///{tmp_path}/monitor.db
defaults: {{interval: 1s, min_interval: 1s, max_interval: 1s, adaptive: false, extract: false}}
daemon: {{tick: 0.25s, health_listen: "127.0.0.1:{health_port}", regex_budget: 200ms}}
feeds:
  - {{url: "{srv.url("/killer")}", name: killer, allow_private: true}}
  - {{url: "{srv.url("/healthy")}", name: healthy, allow_private: true}}
rules:
  - {{name: backtracker, query: "/(a|aa)+$/"}}
""")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        log_path = tmp_path / "daemon.log"
        latencies: list[float] = []
        bodies: list[dict[str, object]] = []
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "monitor", "run", "--config", str(cfg)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
            )
            try:
                deadline = time.monotonic() + 60
                while _healthz(health_port)[1] is None:  # up and listening
                    assert proc.poll() is None, log_path.read_text()
                    assert time.monotonic() < deadline, "the health endpoint never answered"
                    time.sleep(0.2)
                # Watched from the healthy feed's second poll (the first one waits for the
                # parse workers to start), while the killer feed's first poll is matching.
                while sum(r.path == "/healthy" for r in srv.requests) < 2 or not killer.served:
                    assert time.monotonic() < deadline, "the feeds were not polled"
                    time.sleep(0.05)
                watched_from = time.monotonic()
                served_before = killer.served
                while time.monotonic() - watched_from < RUN_FOR:
                    took, body = _healthz(health_port)
                    latencies.append(took)
                    if body is not None:
                        bodies.append(body)
                    time.sleep(0.2)
                # Under load the killer's 40 entries (200 ms budget each) can outlast the
                # window: wait (bounded) for its poll to end and the next one to begin.
                while killer.served <= served_before or _exhausted(bodies) < ENTRIES:
                    assert time.monotonic() < deadline + 60, "the killer feed stalled the daemon"
                    body = _healthz(health_port)[1]
                    if body is not None:
                        bodies.append(body)
                    time.sleep(0.2)
                status = subprocess.run(
                    [sys.executable, "-m", "monitor", "status", "--config", str(cfg)],
                    capture_output=True,
                    text=True,
                    env=env,
                    cwd=ROOT,
                    timeout=60,
                )
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
        text = log_path.read_text(errors="replace")
        healthy_polls = [
            r.started for r in srv.requests if r.path == "/healthy" and r.started >= watched_from
        ]
    assert len(latencies) >= 20
    assert max(latencies) < 1.0, f"/healthz took up to {max(latencies):.2f} s"
    assert killer.served > served_before, "the killer feed was not polled again meanwhile"
    # The healthy feed (interval 1 s, tick 0.25 s) is polled on time meanwhile.
    gaps = [b - a for a, b in itertools.pairwise([watched_from, *healthy_polls])]
    assert len(healthy_polls) >= RUN_FOR / 2, f"only {len(healthy_polls)} polls of the healthy feed"
    assert max(gaps) < 2.5, f"the healthy feed waited up to {max(gaps):.1f} s"
    # The slow rule is named: /healthz counters, monitor status, and the log once per period.
    assert _exhausted(bodies) >= ENTRIES
    assert status.returncode == 0, status.stderr
    assert "backtracker (" in status.stdout
    named = [line for line in text.splitlines() if "rule 'backtracker'" in line]
    assert len(named) == 1, named
    assert "Traceback" not in text
