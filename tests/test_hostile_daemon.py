"""The real daemon against hostile sources: it stays up, stays small, and keeps serving the rest.

One loopback server serves a feed per hostile mode (HTTP 500, 429 with Retry-After, a body that
trickles forever, a 50 MB body, a gzip bomb, a redirect loop, an HTML page, invalid XML, the
quadratic-entity feed) next to healthy feeds whose items change every three seconds and a flaky
feed that fails until the test repairs it. `python -m monitor run` polls them all every second
for a bounded time, with a webhook channel for alerts and a second one with `health: true`.
The daemon runs once per module; each test below asserts one behaviour on what it left behind:
the store, `monitor status --format json`, the receiver's requests and the processes' peak RSS.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from monitor.store import FeedState, Store
from tests.corpora import DATA
from tests.hostile_server import (
    HostileServer,
    RequestHandler,
    fixed,
    gzip_bomb,
    huge,
    redirect,
    send,
    trickle,
)
from tests.receivers import Request, WebhookReceiver

ROOT = Path(__file__).resolve().parents[1]
AG_NEWS = DATA / "news" / "ag_news" / "train_subset.csv"

pytestmark = pytest.mark.slow

RETRY_AFTER = 120
BACKOFF_BASE = 1.0
BACKOFF_MAX = 3.0
DEADLINE = 2.0
GENERATION = 3.0  # seconds between changes of the healthy feeds
RUN_AT_LEAST = 13.0  # seconds the daemon runs, so the healthy feeds change several times

#: path -> the error kind its feed must show in the store.
HOSTILE: dict[str, str] = {
    "/http-500": "http_status",
    "/trickle": "timeout",
    "/huge": "too_large",
    "/gzip-bomb": "too_large",
    "/loop-a": "redirects",
    "/html-page": "feed",
    "/invalid-xml": "feed",
}
HEALTHY = ("/healthy-1", "/healthy-2")


def ag_news(count: int, skip: int) -> list[str]:
    with AG_NEWS.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows[skip : skip + count]]


def rss(items: list[tuple[str, str, str]], title: str) -> bytes:
    """An RSS 2.0 document of (guid, title, description) items."""
    parts = "".join(
        f"<item><title>{html.escape(t)}</title><guid isPermaLink='false'>{g}</guid>"
        f"<link>http://127.0.0.1/{g}</link><description>{html.escape(d)}</description></item>"
        for g, t, d in items
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>{html.escape(title)}</title><link>http://127.0.0.1/</link>"
        f"<description>test</description>{parts}</channel></rss>"
    ).encode()


def quadratic_feed() -> bytes:
    """One "safe" 30 KB entity referenced 3,000 times: 90 MB once expanded (research §1)."""
    refs = "&big;" * 3000
    return (
        '<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY big "' + "A" * 30_000 + '">\n]>\n'
        '<rss version="2.0"><channel><title>Quadratic</title><link>http://127.0.0.1/</link>'
        f"<description>d</description><item><title>{refs}</title>"
        "<link>http://127.0.0.1/q1</link><guid>q1</guid></item></channel></rss>"
    ).encode()


class ChangingFeed:
    """A feed that gains two AG News items every `GENERATION` seconds, with ETag / 304.

    Its clock starts at the daemon's first request, so a daemon slow to start on a loaded
    machine still sees every generation; each answer is recorded with its generation."""

    def __init__(self, name: str, texts: list[str]) -> None:
        self.name = name
        self.texts = texts
        self.started: float | None = None
        self.answers: list[tuple[int, int]] = []  # (generation, HTTP status), in order
        self._lock = threading.Lock()

    def generation(self) -> int:
        if self.started is None:
            return 0
        return int((time.monotonic() - self.started) / GENERATION)

    @property
    def not_modified(self) -> int:
        return sum(1 for _, status in self.answers if status == 304)

    def guids_of(self, generation: int) -> list[str]:
        return [f"{self.name}-{i}" for i in range(generation * 2, generation * 2 + 2)]

    def body(self, generation: int) -> bytes:
        gen = min(generation, len(self.texts) // 2 - 3)
        items = []
        for i in range(gen * 2 + 5, max(-1, gen * 2 - 6), -1):  # newest first, 11 items
            text = self.texts[i]
            items.append((f"{self.name}-{i}", text[:90], text))
        return rss(items, f"Healthy {self.name}")

    def __call__(self, handler: RequestHandler) -> None:
        with self._lock:
            if self.started is None:
                self.started = time.monotonic()
            generation = self.generation()
        body = self.body(generation)
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        status = 304 if handler.headers.get("If-None-Match") == etag else 200
        with self._lock:
            self.answers.append((generation, status))
        if status == 304:
            send(handler, 304, b"", {"ETag": etag})
        else:
            send(handler, 200, body, {"ETag": etag, "Content-Type": "application/rss+xml"})


class Flaky:
    """HTTP 500 until `repair()`, then a small valid feed."""

    def __init__(self) -> None:
        self.repaired = threading.Event()

    def repair(self) -> None:
        self.repaired.set()

    def __call__(self, handler: RequestHandler) -> None:
        if not self.repaired.is_set():
            send(handler, 500, b"down for maintenance")
            return
        send(handler, 200, rss([("flaky-1", "Back online", "The feed works again.")], "Flaky"))


@dataclass
class PeakRss:
    """Samples VmHWM (peak resident set) of a process and of its children until stopped."""

    pid: int
    peaks: dict[int, int] = field(default_factory=dict)  # pid -> kB
    names: dict[int, str] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            for pid in [self.pid, *_children(self.pid)]:
                kb = _vm_hwm(pid)
                if kb is not None:
                    self.peaks[pid] = max(kb, self.peaks.get(pid, 0))
            self.stop.wait(0.05)

    def main_mb(self) -> float:
        return self.peaks.get(self.pid, 0) / 1024

    def children_mb(self) -> dict[int, float]:
        return {p: kb / 1024 for p, kb in self.peaks.items() if p != self.pid}


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _vm_hwm(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


@dataclass
class Outcome:
    """What one bounded run of the daemon left behind."""

    alive_before_stop: bool
    returncode: int
    log: str
    feeds: dict[str, FeedState]  # path -> state, read from the store after the stop
    status: dict[str, Any]  # `monitor status --format json`
    alerts: list[dict[str, Any]]
    health: list[dict[str, Any]]
    requests: Counter[str]  # path -> requests the hostile server saw
    rss: PeakRss
    changing: dict[str, ChangingFeed]
    last_generation: int
    url: str


def _wait(predicate: Any, timeout: float, what: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        assert proc.poll() is None, f"the daemon exited while waiting for {what}"
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def _kinds(requests: list[Request], path: str) -> list[dict[str, Any]]:
    return [r.json() for r in list(requests) if r.path == path]


def _write_config(tmp: Path, srv: HostileServer, hook: WebhookReceiver) -> Path:
    feeds = [*HOSTILE, "/http-429", "/quadratic", "/flaky", *HEALTHY]
    lines = "\n".join(
        f'  - {{url: "{srv.url(p)}", name: "{p.strip("/")}", allow_private: true}}' for p in feeds
    )
    cfg = tmp / "monitor.yaml"
    cfg.write_text(f"""
database: sqlite:///{tmp}/monitor.db
fetch:
  deadline: {DEADLINE}s
  connect_timeout: 2s
  read_timeout: 2s
  per_host: 16
  backoff_base: {BACKOFF_BASE}s
  backoff_max: {BACKOFF_MAX}s
  broken_after: 2s
  workers: 2
  parse_timeout: 10s
defaults: {{interval: 1s, min_interval: 1s, max_interval: 1h, extract: false, channels: [alerts]}}
daemon: {{tick: 0.25s, deliver_every: 0.25s}}
feeds:
{lines}
rules:
  - name: healthy-news
    query: "feed:healthy"
channels:
  alerts: {{type: webhook, url: "{hook.url}alerts", allow_private: true}}
  ops: {{type: webhook, url: "{hook.url}health", allow_private: true, health: true}}
""")
    return cfg


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    tmp = tmp_path_factory.mktemp("hostile")
    texts = ag_news(60, 0), ag_news(60, 300)
    with HostileServer() as srv, WebhookReceiver() as hook:
        changing = {
            path: ChangingFeed(path.strip("/"), t) for path, t in zip(HEALTHY, texts, strict=True)
        }
        flaky = Flaky()
        srv.routes.update(
            {
                "/http-500": fixed(500, b"internal error"),
                "/http-429": fixed(429, b"slow down", Retry_After=str(RETRY_AFTER)),
                "/trickle": trickle,
                "/huge": huge(50 * 1024 * 1024),
                "/gzip-bomb": fixed(
                    200,
                    gzip_bomb(200),
                    Content_Encoding="gzip",
                    Content_Type="application/rss+xml",
                ),
                "/loop-a": redirect(302, "/loop-b"),
                "/loop-b": redirect(302, "/loop-a"),
                "/html-page": fixed(
                    200,
                    b"<!DOCTYPE html><html><head><title>Home</title></head>"
                    b"<body><h1>Welcome</h1><p>No feed here.</p></body></html>",
                    Content_Type="text/html",
                ),
                "/invalid-xml": fixed(
                    200,
                    b'<?xml version="1.0"?><rss version="2.0"><channel><title>x</titel>'
                    b"<item><<<</channel>",
                    Content_Type="application/rss+xml",
                ),
                "/quadratic": fixed(200, quadratic_feed(), Content_Type="application/rss+xml"),
                "/flaky": flaky,
                **changing,
            }
        )
        cfg = _write_config(tmp, srv, hook)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        log_path = tmp / "daemon.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "monitor", "run", "--config", str(cfg)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
            )
            rss = PeakRss(proc.pid)
            sampler = threading.Thread(target=rss.run, daemon=True)
            sampler.start()
            try:
                # Every always-failing feed is reported broken; then the flaky one recovers.
                broken_expected = {srv.url(p) for p in [*HOSTILE, "/flaky"]}
                _wait(
                    lambda: broken_expected <= {m["url"] for m in _kinds(hook.requests, "/health")},
                    40,
                    "source.broken for every failing feed",
                    proc,
                )
                flaky.repair()
                _wait(
                    lambda: any(
                        m["kind"] == "source.recovered" for m in _kinds(hook.requests, "/health")
                    ),
                    20,
                    "source.recovered for the flaky feed",
                    proc,
                )
                # The healthy feeds' run is timed from their first poll, not from the start
                # of a process that can take seconds to import on a loaded machine.
                _wait(
                    lambda: all(c.started is not None for c in changing.values()),
                    60,
                    "the first poll of the healthy feeds",
                    proc,
                )
                while any(
                    time.monotonic() - (c.started or 0) < RUN_AT_LEAST for c in changing.values()
                ):
                    assert proc.poll() is None, "the daemon exited"
                    time.sleep(0.2)
                last_generation = min(c.generation() for c in changing.values())
                # The newest generation's alerts arrive within a couple of polls.
                _wait(
                    lambda: (
                        {g for c in changing.values() for g in c.guids_of(last_generation - 1)}
                        <= {_guid(m) for m in _kinds(hook.requests, "/alerts")}
                    ),
                    15,
                    "alerts for the latest items of the healthy feeds",
                    proc,
                )
                time.sleep(0.5)  # a delivery round: a duplicate would show up by now
                alive = proc.poll() is None
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    rc = proc.wait(timeout=30)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
                    rss.stop.set()
                    sampler.join()
        status_run = subprocess.run(
            [sys.executable, "-m", "monitor", "status", "--config", str(cfg), "--format", "json"],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=60,
        )
        assert status_run.returncode == 0, status_run.stderr
        store = Store(f"sqlite:///{tmp}/monitor.db")
        try:
            prefix = srv.url("")
            feeds = {f.url.removeprefix(prefix): f for f in store.feeds.all()}
        finally:
            store.close()
        requests = Counter(r.path for r in srv.requests)
        yield Outcome(
            alive_before_stop=alive,
            returncode=rc,
            log=log_path.read_text(errors="replace"),
            feeds=feeds,
            status=json.loads(status_run.stdout),
            alerts=_kinds(hook.requests, "/alerts"),
            health=_kinds(hook.requests, "/health"),
            requests=requests,
            rss=rss,
            changing=changing,
            last_generation=last_generation,
            url=prefix,
        )


def _guid(message: dict[str, Any]) -> str:
    # The feed links each item to http://127.0.0.1/<guid>.
    return str(message.get("url") or "").rsplit("/", 1)[-1]


# --------------------------------------------------------------------------- the daemon


def test_daemon_stays_up_and_stops_cleanly(outcome: Outcome) -> None:
    assert outcome.alive_before_stop, outcome.log[-3000:]
    assert outcome.returncode == 0, outcome.log[-3000:]
    assert "Traceback" not in outcome.log, outcome.log[-3000:]


def test_peak_memory_of_daemon_and_workers_stays_bounded(outcome: Outcome) -> None:
    assert outcome.rss.main_mb() > 0, "no sample of the daemon's memory was taken"
    assert outcome.rss.main_mb() < 300, f"daemon peak RSS {outcome.rss.main_mb():.0f} MB"
    children = outcome.rss.children_mb()
    assert children, "no worker process was seen"
    assert max(children.values()) < 300, f"worker peak RSS (MB): {children}"


# --------------------------------------------------------------------------- hostile feeds


@pytest.mark.parametrize(("path", "kind"), sorted(HOSTILE.items()))
def test_hostile_feed_is_recorded_with_its_error_kind_and_backs_off(
    outcome: Outcome, path: str, kind: str
) -> None:
    feed = outcome.feeds[path]
    assert feed.last_error_kind == kind, feed.last_error
    assert feed.consecutive_failures >= 2
    assert feed.last_attempt_at is not None
    # Capped exponential backoff with jitter, measured from the attempt that failed (which
    # took at most the fetch deadline): never sooner than half a step, never later than one.
    step = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (feed.consecutive_failures - 1))
    waited = feed.next_poll_at - feed.last_attempt_at
    assert step / 2 <= waited <= step + DEADLINE + 1.0, (feed.consecutive_failures, waited)


def test_429_is_retried_exactly_after_retry_after(outcome: Outcome) -> None:
    feed = outcome.feeds["/http-429"]
    assert feed.last_error_kind == "http_status"
    assert "429" in (feed.last_error or "")
    assert feed.consecutive_failures == 1
    assert feed.failing_since is not None
    assert feed.next_poll_at - feed.failing_since == pytest.approx(RETRY_AFTER, abs=1e-3)
    assert outcome.requests["/http-429"] == 1


def test_redirect_loop_is_not_followed_round_and_round(outcome: Outcome) -> None:
    polls = outcome.feeds["/loop-a"].consecutive_failures
    assert outcome.requests["/loop-a"] <= 2 * polls + 2
    assert outcome.requests["/loop-b"] <= polls + 1


def test_quadratic_entity_feed_is_read_without_expanding_the_entity(outcome: Outcome) -> None:
    feed = outcome.feeds["/quadratic"]
    assert feed.consecutive_failures == 0, feed.last_error
    assert feed.entries_total == 1


def test_status_json_shows_each_feeds_health(outcome: Outcome) -> None:
    by_url = {f["url"]: f for f in outcome.status["feeds"]}
    for path, kind in HOSTILE.items():
        row = by_url[outcome.url + path]
        assert row["last_error_kind"] == kind
        assert row["broken"] is True
        assert row["failing_since"] is not None
    for path in HEALTHY:
        row = by_url[outcome.url + path]
        assert row["consecutive_failures"] == 0
        assert row["broken"] is False
        assert row["last_error_kind"] is None


# --------------------------------------------------------------------------- healthy feeds


def test_healthy_feeds_keep_being_polled_and_each_new_item_is_alerted_once(
    outcome: Outcome,
) -> None:
    alerted = Counter(_guid(m) for m in outcome.alerts)
    assert all(n == 1 for n in alerted.values()), alerted.most_common(3)
    for feed in outcome.changing.values():
        for generation in range(outcome.last_generation):
            for guid in feed.guids_of(generation):
                assert guid in alerted, f"{guid} (generation {generation}) was never alerted"


def test_unchanged_healthy_feeds_are_answered_304(outcome: Outcome) -> None:
    for path, feed in outcome.changing.items():
        by_generation: dict[int, list[int]] = {}
        for generation, status in feed.answers:
            by_generation.setdefault(generation, []).append(status)
        # Polled more often than it changed (so some polls found it unchanged)...
        assert outcome.feeds[path].polls > len(by_generation), by_generation
        assert feed.not_modified > 0, by_generation
        # ...and each poll between two changes was a conditional GET the server answered 304:
        # one full answer per generation of the feed, the first poll that saw it.
        for generation, statuses in by_generation.items():
            assert statuses[0] == 200 and set(statuses[1:]) <= {304}, (generation, statuses)


# --------------------------------------------------------------------------- source health


def test_each_failing_feed_is_reported_broken_once_to_health_channels(outcome: Outcome) -> None:
    broken = Counter(m["url"] for m in outcome.health if m["kind"] == "source.broken")
    expected = {outcome.url + p for p in [*HOSTILE, "/flaky"]}
    assert set(broken) == expected
    assert all(n == 1 for n in broken.values()), broken


def test_repaired_feed_is_reported_recovered_once(outcome: Outcome) -> None:
    recovered = [m for m in outcome.health if m["kind"] == "source.recovered"]
    assert [m["url"] for m in recovered] == [outcome.url + "/flaky"]
    assert outcome.feeds["/flaky"].consecutive_failures == 0
    assert outcome.feeds["/flaky"].broken_reported is False


def test_health_events_go_only_to_health_channels(outcome: Outcome) -> None:
    assert {m["kind"] for m in outcome.alerts} == {"alert"}
    assert {m["kind"] for m in outcome.health} == {"source.broken", "source.recovered"}
