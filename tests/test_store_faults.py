"""Store faults (issue 14, items 1 and 4; issue 19, item 4): a store that refuses writes is a
store condition, never a feed's failure, and the work it cut short is given back as soon as
the store accepts writes again.

Real `Runtime` over a loopback feed; the fault is injected at the connection
(`tests/storefault.py`): every write statement fails with SQLite's own "database or disk is
full" while it is on, reads go through.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from monitor.store import schema
from monitor.store.engine import read_tx
from monitor.store.health import FULL, READ_ONLY, WRITABLE, StoreHealth, classify
from tests.hostile_server import HostileServer, RequestHandler
from tests.storefault import WriteFault, sqlite_error
from tests.test_poll_schedule import close, conditional, rss, runtime, server  # noqa: F401


def _lease_owner(rt: object) -> str | None:
    with read_tx(rt.store.engine) as conn:  # type: ignore[attr-defined]
        return conn.execute(select(schema.feeds.c.lease_owner)).scalar_one()  # type: ignore[no-any-return]


def _articles(rt: object) -> int:
    with read_tx(rt.store.engine) as conn:  # type: ignore[attr-defined]
        return int(conn.execute(select(func.count()).select_from(schema.articles)).scalar_one())


async def _until(check: object, timeout: float) -> float:
    start = time.monotonic()
    while not check():  # type: ignore[operator]
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


def test_a_poll_cut_short_by_a_full_disk_gives_its_feed_back_when_space_returns(
    tmp_path: Path,
    server: HostileServer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    fault = WriteFault("full")
    fault.on = False
    requests: list[float] = []
    answer = conditional(rss(3))

    def handle(h: RequestHandler) -> None:
        requests.append(time.monotonic())
        if len(requests) == 1:
            fault.on = True  # the disk fills while the feed is being fetched
        answer(h)

    server.routes["/f"] = handle
    rt = runtime(tmp_path, server, ["/f"])
    caplog.set_level(logging.INFO)
    outcomes = []

    async def scenario() -> float:
        stop = asyncio.Event()
        loop = asyncio.create_task(rt.poll_due(stop=stop, on_outcome=outcomes.append, recheck=0.2))
        await _until(lambda: outcomes, 10)
        # The commit was refused: the feed is not failed, its entries are still new, the
        # store's condition says why, and the feed is still leased (held by the loop).
        assert [o.status for o in outcomes] == ["deferred"]
        assert "store full" in (outcomes[0].error or "")
        [feed] = rt.store.feeds.all()
        assert (feed.failing_since, feed.last_error, feed.health) == (None, None, "ok")
        assert _lease_owner(rt) == rt.owner
        assert rt.store.health.current.condition == FULL
        assert _articles(rt) == 0
        await asyncio.sleep(1.5)  # the loop keeps trying, and failing, meanwhile
        assert len(requests) == 1
        fault.on = False  # space is back
        took = await _until(lambda: _articles(rt) == 3, 10)
        stop.set()
        await loop
        return took

    try:
        with fault:
            took = asyncio.run(scenario())
        [feed] = rt.store.feeds.all()
    finally:
        close(rt)
    assert took < 5  # polled again within seconds, not a lease (5 min) later
    assert len(requests) == 2
    assert [o.status for o in outcomes] == ["deferred", "new"]
    assert (feed.health, feed.failing_since, feed.polls) == ("ok", None, 1)
    assert rt.store.health.current.condition == WRITABLE
    # One line when the fault started, one when it ended; no traceback for a refused write.
    store_lines = [r.getMessage() for r in caplog.records if r.name == "monitor.store.health"]
    assert len(store_lines) == 2, store_lines
    assert "is full: OperationalError: database or disk is full" in store_lines[0]
    assert "monitor.db" in store_lines[0]
    assert "writable again" in store_lines[1]
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert not [r for r in caplog.records if "failed [" in r.getMessage()]


def test_a_failed_poll_whose_failure_cannot_be_recorded_is_given_back(
    tmp_path: Path,
    server: HostileServer,  # noqa: F811
) -> None:
    fault = WriteFault("read-only")
    fault.on = False
    calls: list[int] = []
    answer = conditional(rss(2))

    def handle(h: RequestHandler) -> None:
        calls.append(1)
        if len(calls) == 1:
            fault.on = True
            h.send_response(500)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        answer(h)

    server.routes["/f"] = handle
    rt = runtime(tmp_path, server, ["/f"])
    outcomes = []

    async def scenario() -> None:
        stop = asyncio.Event()
        loop = asyncio.create_task(rt.poll_due(stop=stop, on_outcome=outcomes.append, recheck=0.2))
        await _until(lambda: outcomes, 10)
        assert rt.store.health.current.condition == READ_ONLY
        fault.on = False
        await _until(lambda: _articles(rt) == 2, 5)
        stop.set()
        await loop

    try:
        with fault:
            asyncio.run(scenario())
        [feed] = rt.store.feeds.all()
    finally:
        close(rt)
    # The lease came back within seconds; the 500 was never recorded (it could not be), so
    # the feed was due again at once and its next poll stored its entries.
    assert [o.status for o in outcomes] == ["deferred", "new"]
    assert (feed.health, feed.failing_since, feed.polls) == ("ok", None, 1)


def test_classify_tells_store_conditions_from_other_errors() -> None:
    import psycopg
    from psycopg import errors as pg
    from sqlalchemy.exc import IntegrityError, OperationalError

    def wrapped(orig: BaseException) -> OperationalError:
        return OperationalError("INSERT ...", {}, orig)

    assert classify(wrapped(sqlite_error("full"))) == FULL
    assert classify(wrapped(sqlite_error("read-only"))) == READ_ONLY
    import sqlite3

    assert classify(wrapped(sqlite3.OperationalError("database is locked"))) == "locked"
    assert classify(wrapped(sqlite3.OperationalError("no such table: feeds"))) is None
    assert classify(IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE"))) is None
    assert classify(wrapped(pg.ReadOnlySqlTransaction("read-only transaction"))) == READ_ONLY
    assert classify(wrapped(pg.AdminShutdown("terminating connection"))) == "unreachable"
    assert classify(wrapped(pg.DiskFull("could not extend file"))) == FULL
    assert classify(wrapped(psycopg.OperationalError("connection refused"))) == "unreachable"
    assert classify(RuntimeError("a bug")) is None


def test_repeated_refusals_are_summarised_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    from sqlalchemy.exc import OperationalError

    now = [1000.0]
    health = StoreHealth("sqlite:///x.db", clock=lambda: now[0], monotonic=lambda: now[0])
    exc = OperationalError("BEGIN", {}, sqlite_error("read-only"))
    caplog.set_level(logging.INFO, logger="monitor.store.health")
    for _ in range(169):  # about three a second for a minute
        health.failed(exc)
        now[0] += 0.36
    health.succeeded()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert lines[0].startswith("database sqlite:///x.db is read-only: OperationalError")
    assert "still read-only: 167 operations refused in the last 60 s" in lines[1]
    assert "writable again after 61 s (169 operations refused while read-only)" in lines[2]
