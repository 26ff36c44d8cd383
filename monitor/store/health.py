"""The store's own health: writable, or read-only, full, locked or unreachable.

One place tracks it (`StoreHealth`, one per `Store`), fed by the errors the group writer, the
poll loop and the readers see. `classify` tells a store condition (the disk is full, the file
or the server is read-only, PostgreSQL is down) from any other error by the drivers' own codes
(SQLite's extended result codes, PostgreSQL's SQLSTATE) and, for errors raised without one,
their messages. A store condition is never a feed's failure: its work is given back when the
store accepts writes again (see `monitor.poll_loop`).

Logging is one line when a condition starts (the database, without its password, and the
cause), one summary a minute while it lasts ("still read-only: 168 writes refused in the last
60 s"), and one line when it ends; never a traceback per refused write.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("monitor.store.health")

WRITABLE = "writable"
READ_ONLY = "read-only"
FULL = "full"
LOCKED = "locked"
UNREACHABLE = "unreachable"
#: Every condition, for the metrics gauge (one series each, 1 for the current one).
CONDITIONS = (WRITABLE, READ_ONLY, FULL, LOCKED, UNREACHABLE)
#: Seconds between two "still ..." summaries while a condition lasts.
SUMMARY_EVERY = 60.0

# SQLite primary result codes (https://www.sqlite.org/rescode.html): the low byte of the
# extended code that Python 3.11+ puts on `sqlite3.Error.sqlite_errorcode`.
_SQLITE_CODES = {
    5: LOCKED,  # SQLITE_BUSY
    6: LOCKED,  # SQLITE_LOCKED
    8: READ_ONLY,  # SQLITE_READONLY
    10: UNREACHABLE,  # SQLITE_IOERR (the file's disk went away, or a write failed)
    13: FULL,  # SQLITE_FULL
    14: UNREACHABLE,  # SQLITE_CANTOPEN
    3: READ_ONLY,  # SQLITE_PERM
}
_SQLITE_MESSAGES = (
    ("readonly database", READ_ONLY),
    ("read-only", READ_ONLY),
    ("disk is full", FULL),
    ("database is locked", LOCKED),
    ("database table is locked", LOCKED),
    ("disk i/o error", UNREACHABLE),
    ("unable to open database", UNREACHABLE),
)
# PostgreSQL SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html).
_PG_STATES = {
    "25006": READ_ONLY,  # read_only_sql_transaction (a standby, default_transaction_read_only)
    "53100": FULL,  # disk_full
    "53200": FULL,  # out_of_memory
    "53300": UNREACHABLE,  # too_many_connections
    "55P03": LOCKED,  # lock_not_available
    "57P01": UNREACHABLE,  # admin_shutdown
    "57P02": UNREACHABLE,  # crash_shutdown
    "57P03": UNREACHABLE,  # cannot_connect_now (starting up, shutting down)
    "58030": FULL,  # io_error
}
_PG_CLASSES = {"08": UNREACHABLE, "53": FULL, "57": UNREACHABLE, "58": UNREACHABLE}


def _driver_error(exc: BaseException) -> BaseException:
    """The driver's own exception under SQLAlchemy's wrapper (`DBAPIError.orig`)."""
    orig = getattr(exc, "orig", None)
    return orig if isinstance(orig, BaseException) else exc


def classify(exc: BaseException) -> str | None:
    """The store condition `exc` shows, or None when it is not one (a bug, a constraint)."""
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, sa_exc.TimeoutError):  # no connection of the pool came free
        return UNREACHABLE
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return UNREACHABLE
    err = _driver_error(exc)
    if isinstance(err, sqlite3.Error):
        return _classify_sqlite(err)
    state = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)
    if state:
        return _PG_STATES.get(state) or _PG_CLASSES.get(str(state)[:2])
    module = type(err).__module__.split(".")[0]
    if module in ("psycopg", "psycopg2") and type(err).__name__ == "OperationalError":
        return UNREACHABLE  # no SQLSTATE: the connection failed or was lost
    return None


def _classify_sqlite(err: sqlite3.Error) -> str | None:
    code = getattr(err, "sqlite_errorcode", None)
    if isinstance(code, int) and (found := _SQLITE_CODES.get(code & 0xFF)):
        return found
    message = str(err).lower()
    for needle, condition in _SQLITE_MESSAGES:
        if needle in message:
            return condition
    return None


def cause_of(exc: BaseException) -> str:
    """The driver's first line about `exc`, for one log line (no SQL, no parameters)."""
    err = _driver_error(exc)
    lines = str(err).strip().splitlines()
    first = lines[0][:200] if lines else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


@dataclass(frozen=True, slots=True)
class StoreCondition:
    """What `status`, `/healthz`, `/readyz` and the metrics show."""

    condition: str  # one of CONDITIONS
    since: float | None = None  # wall-clock start of a fault
    cause: str = ""
    refused: int = 0  # store operations that failed since the fault started

    @property
    def ok(self) -> bool:
        return self.condition == WRITABLE

    def reason(self, database: str) -> str:
        """One line: what is wrong with which database."""
        if self.ok:
            return f"{database} is writable"
        return f"{database} is {self.condition}: {self.cause}"

    def to_dict(self, database: str) -> dict[str, Any]:
        return {
            "database": database,
            "condition": self.condition,
            "since": self.since,
            "cause": self.cause or None,
            "refused": self.refused,
        }


#: The database of the last `StoreHealth` made (the store a command opened), shown without
#: its password, for `fault_message`.
_last_database = ""


def fault_message(exc: BaseException, *, database: str | None = None) -> str | None:
    """The one line a command prints when a store condition stops it (e.g. starting on a
    read-only database), or None when `exc` is not one. `database`: its URL as shown (default:
    the store opened last)."""
    condition = classify(exc)
    if condition is None:
        return None
    advice = _ADVICE.get(condition, "")
    name = database or _last_database or "the database"
    return f"database: {name} is {condition} ({cause_of(exc)}){advice}"


_ADVICE = {
    READ_ONLY: ": make the file, its folder or the server writable, or set `database` to a"
    " writable one",
    FULL: ": free space on its disk, or set `database` to another one",
    LOCKED: ": another process holds its write lock; try again",
    UNREACHABLE: ": check that the server is running and reachable, or set `database`",
}


class StoreHealth:
    """The store's condition, changed by `failed` and `succeeded` (thread-safe: the writer
    thread, the event loop and worker threads all report)."""

    def __init__(
        self,
        database: str,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        global _last_database
        self.database = _last_database = database  # shown without its password
        self.clock = clock
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._state = StoreCondition(WRITABLE)
        self._window_start = 0.0  # monotonic start of the current summary window
        self._window_refused = 0

    @property
    def current(self) -> StoreCondition:
        return self._state

    @property
    def ok(self) -> bool:
        return self._state.ok

    def failed(self, exc: BaseException) -> str | None:
        """Report an error a store operation raised; its condition, or None when it is not a
        store condition (the caller handles it as before)."""
        condition = classify(exc)
        if condition is None:
            return None
        cause = cause_of(exc)
        with self._lock:
            st = self._state
            now = self.monotonic()
            if st.condition != condition:
                self._state = StoreCondition(condition, self.clock(), cause, 1)
                self._window_start, self._window_refused = now, 0
                log.error("database %s is %s: %s", self.database, condition, cause)
                return condition
            self._state = StoreCondition(condition, st.since, st.cause, st.refused + 1)
            self._window_refused += 1
            if now - self._window_start >= SUMMARY_EVERY:
                log.warning(
                    "database %s still %s: %d operations refused in the last %.0f s (%s)",
                    self.database,
                    condition,
                    self._window_refused,
                    now - self._window_start,
                    cause,
                )
                self._window_start, self._window_refused = now, 0
        return condition

    def succeeded(self) -> None:
        """A write (or, when unreachable, any operation) went through: the fault is over."""
        if self._state.ok:  # the common case, without the lock
            return
        with self._lock:
            st = self._state
            if st.ok:
                return
            self._state = StoreCondition(WRITABLE)
        lasted = self.clock() - (st.since or self.clock())
        log.warning(
            "database %s is writable again after %.0f s (%d operations refused while %s)",
            self.database,
            lasted,
            st.refused,
            st.condition,
        )

    def to_dict(self) -> dict[str, Any]:
        return self._state.to_dict(self.database)


def probe(engine: Any) -> StoreCondition:
    """Whether the database accepts writes now, asked without changing anything: on SQLite
    a write transaction with a no-op UPDATE, rolled back at once (a short busy timeout, so a
    held lock shows as locked rather than a wait), on PostgreSQL `transaction_read_only` (a
    standby, or a read-only default). What `monitor status` shows; the daemon's own condition is
    `StoreHealth`, fed by the writes it does."""
    try:
        raw = engine.raw_connection()
    except Exception as exc:
        return StoreCondition(classify(exc) or UNREACHABLE, time.time(), cause_of(exc))
    try:
        cur = raw.cursor()
        if engine.dialect.name == "sqlite":
            cur.execute("PRAGMA busy_timeout=2000")
            try:
                cur.execute("BEGIN IMMEDIATE")  # succeeds on a read-only file in WAL mode:
                try:  # a write that changes nothing, rolled back, tells
                    cur.execute("UPDATE alembic_version SET version_num = version_num")
                finally:
                    cur.execute("ROLLBACK")
            finally:
                cur.execute("PRAGMA busy_timeout=30000")
        else:
            cur.execute("SHOW transaction_read_only")
            row = cur.fetchone()
            raw.rollback()
            if row and str(row[0]).lower() == "on":
                return StoreCondition(READ_ONLY, time.time(), "transaction_read_only is on")
        cur.close()
    except Exception as exc:
        condition = classify(exc)
        if condition is None:
            raise
        return StoreCondition(condition, time.time(), cause_of(exc))
    finally:
        raw.close()
    return StoreCondition(WRITABLE)


def refuse_read_only(engine: Any, database: str) -> str | None:
    """The one line a starting daemon or `once` stops with when the database cannot take any
    write (a read-only file, folder or server), or None. A full disk or a lock may clear by
    itself, so those are left to the running store condition."""
    condition = probe(engine)
    if condition.condition != READ_ONLY:
        return None
    return f"database: {database} is {READ_ONLY} ({condition.cause}){_ADVICE[READ_ONLY]}"
