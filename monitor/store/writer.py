"""Group commit: the write transactions of many concurrent polls, committed together.

Every poll that stores entries, and every lease of due feeds, is a write transaction with a
durable commit (an fsync of the WAL on SQLite with `synchronous=FULL`). Run one by one, those
commits were the daemon's bottleneck: measured in bench/bench_fetch.py, the process's write
lock was held 8 s of a 9 s cold poll of 2,000 feeds, 1.4 ms of each transaction being the
COMMIT alone. `GroupWriter` runs every piece of work queued while the previous commit was in
progress in ONE transaction, each inside its own SAVEPOINT (a piece alone needs none: its
transaction is its savepoint), and commits once: the same
statements, in the order they were queued, and the same atomicity for each piece (a piece
that raises is rolled back to its savepoint and only its caller gets the error); a crash
before the commit loses the whole group, which is as safe as losing one piece (leases
expire, the feeds are polled again and find their entries still new).

On PostgreSQL, pieces that decide stories name their advisory locks (`locks`, see
`monitor.store.stories.story_locks`): the group takes all of them at its start, in one
statement and in ascending order, and holds them until its commit. Two nodes' groups that
share a story key therefore run one after the other, and cannot deadlock on those locks (each
takes its locks in the same global order, all before anything else). A group holds at most
`max_locks` of them, so a cold start's big groups neither fill PostgreSQL's lock table nor
lock out the other nodes for long. Row locks can still meet in a cycle (two groups touching
the same two stories), and a unique key can be taken by another node's commit meanwhile: a
piece that fails so (deadlock, serialization failure, unique violation) is rolled back to its
savepoint and queued again for the next group, which sees the other node's commit.

Hand-written: SQLAlchemy and the drivers commit per transaction, and no library we use
offers group commit for an embedded database.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from monitor.store.engine import write_tx
from monitor.store.health import StoreHealth
from monitor.store.stories import refresh_statistics, take_story_locks

log = logging.getLogger("monitor.store.writer")

T = TypeVar("T")


@dataclass(slots=True)
class _Work(Generic[T]):
    fn: Callable[[Connection], T]
    future: asyncio.Future[T]
    loop: asyncio.AbstractEventLoop
    locks: Collection[int] = ()
    result: Any = None
    error: BaseException | None = field(default=None)
    tries: int = 0


def _settle(work: _Work[Any]) -> None:
    if work.future.done():  # the caller was cancelled; the work itself still committed
        return
    if work.error is not None:
        work.future.set_exception(work.error)
    else:
        work.future.set_result(work.result)


def _settle_all(works: list[_Work[Any]]) -> None:
    for work in works:
        _settle(work)


#: SQLSTATEs of a piece that lost a race with another transaction: run it again.
_RETRY = {"40P01", "40001", "23505"}  # deadlock, serialization failure, unique violation
#: How often a piece is run again before its caller gets the error.
RETRIES = 3


def _lost_race(exc: BaseException) -> bool:
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in _RETRY


class GroupWriter:
    """Runs `fn(conn)` for many callers in shared write transactions, one commit per group."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_group: int = 64,
        max_locks: int = 1024,
        health: StoreHealth | None = None,
        writers: int = 1,
    ) -> None:
        self.engine = engine
        self.max_locks = max_locks
        self.health = health  # told of every group's store fault, and of each commit
        self.max_group = max_group
        # SQLite has one writer at a time whatever we do. On PostgreSQL a group mostly waits
        # on round trips, and two groups of one node are no different from the groups of two
        # nodes (per-key story locks, retry on a lost race), so `writers` groups run at once.
        self.writers = 1 if engine.dialect.name == "sqlite" else max(1, writers)
        self._pending: list[_Work[Any]] = []
        self._lock = threading.Lock()
        self._draining = 0  # threads draining `_pending` now
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.writers, thread_name_prefix="monitor-writer"
        )
        self.groups = 0  # transactions committed (for tests and the benchmark)
        self.pieces = 0
        self.retried = 0  # pieces run again after losing a race

    async def run(self, fn: Callable[[Connection], T], *, locks: Collection[int] = ()) -> T:
        """`fn(conn)` inside a write transaction shared with other callers; its result.

        `locks`: the story lock numbers `fn` decides under (PostgreSQL; ignored on SQLite)."""
        loop = asyncio.get_running_loop()
        work: _Work[T] = _Work(fn, loop.create_future(), loop, locks)
        with self._lock:
            self._pending.append(work)
            start = self._draining < self.writers
            self._draining += start
        if start:
            self._executor.submit(self._drain)
        return await work.future

    def _drain(self) -> None:
        while True:
            with self._lock:
                group = self._take()
                if not group:
                    self._draining -= 1
                    return
            again = self._commit(group)
            if again:
                with self._lock:  # first in the next group, which sees the other commit
                    self._pending[:0] = again
                group = [w for w in group if not any(w is a for a in again)]
            # One wake-up of each caller's event loop per group, not one per piece.
            by_loop: dict[asyncio.AbstractEventLoop, list[_Work[Any]]] = {}
            for work in group:
                by_loop.setdefault(work.loop, []).append(work)
            for loop, works in by_loop.items():
                with contextlib.suppress(RuntimeError):  # that event loop has closed
                    loop.call_soon_threadsafe(_settle_all, works)

    def _take(self) -> list[_Work[Any]]:
        """The next group: up to `max_group` pieces, and no more than `max_locks` locks
        (a piece with more than that goes alone)."""
        taken, locks = 0, 0
        for work in self._pending[: self.max_group]:
            if taken and locks + len(work.locks) > self.max_locks:
                break
            taken += 1
            locks += len(work.locks)
        group = self._pending[:taken]
        del self._pending[:taken]
        return group

    def _commit(self, group: list[_Work[Any]]) -> list[_Work[Any]]:
        """Run and commit the group; returns the pieces to run again (they lost a race)."""
        try:
            with write_tx(self.engine) as conn:
                again = _run_group(conn, group)
        except BaseException as exc:  # nothing of the group is stored
            return self._failed(group, exc)
        group = [w for w in group if not any(w is a for a in again)]
        with self._lock:  # several writer threads on PostgreSQL
            self.retried += len(again)
            self.groups += 1
            self.pieces += len(group)
        if self.health is not None:
            faults = [w.error for w in group if w.error is not None]
            if not any(self.health.failed(e) for e in faults):
                self.health.succeeded()
        try:
            refresh_statistics(self.engine)
        except Exception:  # the planner keeps older statistics; autovacuum will refresh them
            log.warning("could not refresh the story tables' statistics", exc_info=True)
        return again

    def _failed(self, group: list[_Work[Any]], exc: BaseException) -> list[_Work[Any]]:
        """The group's transaction raised (BEGIN, COMMIT, or a piece that ran alone): run a
        lone piece that lost a race again, else every caller gets the error."""
        if _again_alone(group, exc):
            with self._lock:
                self.retried += 1
            return group
        for work in group:
            work.error = exc
            work.result = None
        if not isinstance(exc, Exception):
            raise exc
        if self.health is not None:
            self.health.failed(exc)
        return []

    def close(self) -> None:
        """Finish the queued work and stop the writer thread."""
        self._executor.shutdown(wait=True)


def _run_group(conn: Connection, group: list[_Work[Any]]) -> list[_Work[Any]]:
    """The group's pieces in its transaction; returns those to run again. A piece alone
    needs no savepoint: its transaction is one (on PostgreSQL, two round trips fewer)."""
    if conn.dialect.name != "sqlite":
        _take_locks(conn, group)
    if len(group) == 1:
        group[0].result = group[0].fn(conn)
        return []
    if conn.dialect.name == "sqlite":
        _pieces_sqlite(conn, group)
        return []
    return _pieces(conn, group)


def _pieces_sqlite(conn: Connection, group: list[_Work[Any]]) -> None:
    """Each piece in a savepoint of its own, on SQLite's own cursor: SQLAlchemy's
    begin_nested cost more than the small pieces it wrapped (a sixth of this thread's time)."""
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    for work in group:
        cur.execute("SAVEPOINT monitor_group_piece")
        try:
            work.result = work.fn(conn)
        except Exception as exc:
            cur.execute("ROLLBACK TO monitor_group_piece")
            work.error = exc
        cur.execute("RELEASE monitor_group_piece")


def _again_alone(group: list[_Work[Any]], exc: BaseException) -> bool:
    """A piece that ran alone (no savepoint) lost a race: queue it again, as `_pieces`
    does for one of a group."""
    if len(group) != 1 or not _lost_race(exc) or group[0].tries >= RETRIES:
        return False
    group[0].tries += 1
    return True


def _take_locks(conn: Connection, group: list[_Work[Any]]) -> None:
    """Every story lock of the group, ascending, before anything else (PostgreSQL)."""
    take_story_locks(conn, {k for work in group for k in work.locks})


def _pieces(conn: Connection, group: list[_Work[Any]]) -> list[_Work[Any]]:
    """Each piece in a savepoint of its own (a failing piece is rolled back alone); returns
    the pieces that lost a race with another transaction, to run again."""
    again = []
    for work in group:
        try:
            with conn.begin_nested():
                work.result = work.fn(conn)
        except Exception as exc:
            if _lost_race(exc) and work.tries < RETRIES:
                work.tries += 1
                again.append(work)
                continue
            work.error = exc
    return again
