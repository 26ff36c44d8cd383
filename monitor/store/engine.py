"""Database engines and transactions: SQLite (default) or PostgreSQL, migrated on open.

SQLite is opened in WAL mode with `synchronous=FULL` (the outbox must survive power loss), a
busy timeout, and every write transaction started with `BEGIN IMMEDIATE`: a deferred
transaction that upgrades from read to write gets SQLITE_BUSY at once, whatever the timeout
(dependencies.md §10). PostgreSQL gets the same schema through the same Alembic migrations.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    CursorResult,
    Engine,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    create_engine,
    event,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql.elements import TextClause

from monitor.errors import MonitorError

MIGRATIONS = Path(__file__).parent / "migrations"
#: The newest migration's revision; a test checks it against Alembic's own idea of the head.
HEAD_REVISION = "0010"


class StoreError(MonitorError):
    kind = "store"


class DatabaseError(StoreError):
    """The database of the `database` setting cannot be used; the message says what to do.

    One line for the user (the CLI prints it as is): never a driver's traceback.
    """

    kind = "database"


_URL_HELP = "use sqlite:///path/to/monitor.db or postgresql://user:password@host/dbname"


def shown_url(url: str) -> str:
    """`url` with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unreadable URL>"


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError:
        raise DatabaseError(f"database: {url!r} is not a database URL: {_URL_HELP}") from None


def _check_sqlite_path(database: str) -> None:
    """A SQLite file's folder must exist and be writable (WAL mode writes files beside it)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    folder = Path(database).absolute().parent
    if not folder.is_dir():
        raise DatabaseError(
            f"database: the folder {folder} (of sqlite:///{database}) does not exist: create"
            " it, or set `database` to a file in an existing folder"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DatabaseError(
            f"database: the folder {folder} (of sqlite:///{database}) is not writable by this"
            " user: fix its permissions, or set `database` to a file in a writable folder"
        )


def normalise_url(url: str) -> str:
    """Accept `postgresql://` and `postgres://` and use the psycopg 3 driver for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


#: Most connections one process opens to PostgreSQL unless told (`database_pool_size`).
DEFAULT_POOL_SIZE = 10


def make_engine(url: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> Engine:
    """An engine for `url`. Raises `DatabaseError` for an unsupported URL, a missing driver or
    a SQLite file whose folder is missing or unwritable (no folder is ever created).
    `pool_size` bounds the connections to PostgreSQL (SQLite keeps its own pool)."""
    url = normalise_url(url)
    parsed = _parse(url)
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise DatabaseError(f"database: unsupported database {backend!r} in the URL: {_URL_HELP}")
    try:
        return _create(url, parsed, pool_size)
    except (ImportError, NoSuchModuleError) as exc:
        driver = parsed.get_driver_name()
        raise DatabaseError(
            f"database: the {driver} driver for {parsed.drivername} is not installed ({exc}):"
            f" install it (pip install {_DRIVER_PACKAGES.get(driver, driver)}), or set"
            " `database` to a URL of an installed driver"
        ) from None


_DRIVER_PACKAGES = {"psycopg": "'psycopg[binary]'", "psycopg2": "psycopg2-binary"}


def _create(url: str, parsed: URL, pool_size: int) -> Engine:
    if parsed.get_backend_name() == "sqlite":
        _check_sqlite_path(parsed.database or "")
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "isolation_level": None, "check_same_thread": False},
            # A pool, so a transaction does not pay for opening a connection, its PRAGMAs and,
            # on closing the last one, a WAL checkpoint (about 1.5 ms each, measured in
            # bench/bench_fetch.py). A checked-out connection belongs to one thread at a time.
            poolclass=QueuePool,
            pool_size=8,
            max_overflow=8,
        )
        _sqlite_pragmas(engine)
        return engine
    from monitor.store import schema

    schema.declare_postgresql()
    connect_args = {"connect_timeout": 10} if parsed.get_driver_name() == "psycopg" else {}
    # At most `pool_size` connections, none beyond (an overflow would let every node exceed
    # what the server's max_connections was sized for); a caller waits for a free one.
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=30,
        connect_args=connect_args,
    )


def connect_problem(engine: Engine, exc: Exception) -> DatabaseError:
    """The one line a user reads when the database cannot be reached or opened."""
    url = shown_url(str(engine.url))
    from monitor.store.health import FULL, READ_ONLY, classify, fault_message

    if classify(exc) in (READ_ONLY, FULL):  # said as the store condition it is
        return DatabaseError(fault_message(exc, database=url) or str(exc))
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first = reason[0] if reason else type(exc).__name__
    if engine.dialect.name == "sqlite":
        advice = "check the file and its folder's permissions, or set `database` to another file"
    else:
        advice = (
            "check that the server is running and reachable and the URL's user, password and"
            " database name, or set `database` (or MONITOR_DATABASE)"
        )
    return DatabaseError(f"database: cannot open {url}: {first}: {advice}")


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        # Before anything writes the file: a new database then gives the pages retention
        # frees back (monitor/store/retention.py); an existing one keeps its mode until VACUUM
        # (and is not asked: on a read-only file the PRAGMA itself is a refused write).
        if cur.execute("PRAGMA page_count").fetchone()[0] == 0:
            cur.execute("PRAGMA auto_vacuum=INCREMENTAL")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")


def new_id(result: CursorResult[Any]) -> int:
    """The primary key of the row an INSERT just wrote."""
    key = result.inserted_primary_key
    assert key is not None, "not an INSERT"
    return int(key[0])


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()
_WRITE_LOCKS_GUARD = threading.Lock()


def _write_lock(engine: Engine) -> contextlib.AbstractContextManager[Any]:
    """This process's writers to one SQLite database queue on a lock.

    SQLite has one writer at a time anyway. Without the lock, threads of this process that
    write at once wait in SQLite's busy handler, which sleeps in steps of up to 100 ms and
    left the CPU idle for a third of the benchmark's cold run (bench/README.md, Fetching).
    Other processes (the CLI, a second daemon) still meet `BEGIN IMMEDIATE` and the busy
    timeout. Re-entrant, as a nested write transaction was allowed before (it waits on SQLite).
    """
    if engine.dialect.name != "sqlite":
        return contextlib.nullcontext()
    with _WRITE_LOCKS_GUARD:
        lock = _WRITE_LOCKS.get(engine)
        if lock is None:
            lock = _WRITE_LOCKS[engine] = threading.RLock()
    return lock


@contextlib.contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """A write transaction (BEGIN IMMEDIATE on SQLite): commits on exit, rolls back on error."""
    with _write_lock(engine), engine.begin() as conn:
        yield conn


@contextlib.contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    """A read-only snapshot; on SQLite a deferred transaction that never takes the write lock."""
    with engine.connect() as conn:
        conn = conn.execution_options(sqlite_begin="DEFERRED")
        with conn.begin():
            yield conn


def unnest_insert(table: str, columns: Sequence[tuple[str, str]], tail: str = "") -> TextClause:
    """A PostgreSQL INSERT of many rows given as one array per column (`columns`: name and
    SQL type), in the rows' order; `tail` follows (ON CONFLICT ..., RETURNING ...).

    One short statement text whatever the number of rows: psycopg parses a query's text for
    its placeholders on every run unless it has seen it, and a multi-row VALUES of 300
    placeholders cost 6 ms of CPU to parse each time (measured with bench/bench_nodes.py's
    daemon under cProfile). Rows are inserted in array order (the ORDER BY), so serial ids
    and RETURNING follow the rows' order, as SQLAlchemy's own insertmanyvalues relies on.
    """
    names = ", ".join(name for name, _ in columns)
    arrays = ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in columns)
    return text(
        f"INSERT INTO {table} ({names}) SELECT {names} FROM unnest({arrays})"
        f" WITH ORDINALITY AS t({names}, row_number) ORDER BY row_number {tail}"
    )


def arrays(
    columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]
) -> dict[str, list[Any]]:
    """The parameters of an `unnest_insert`: one list per column."""
    return {name: [row[i] for row in rows] for i, (name, _) in enumerate(columns)}


#: PostgreSQL advisory lock keys: work that must not interleave between nodes. "stories" is
#: not taken itself: it is the first key of the two-key story locks (`stories.story_locks`).
LOCKS = {"migrate": 0x6E6D6F6E, "feeds": 0x6E6D6F66, "stories": 0x6E6D6F73}


def serialise(conn: Connection, what: str) -> None:
    """Hold `what`'s lock until the transaction ends (PostgreSQL; SQLite writers are serial).

    Used where two nodes would otherwise race: creating the same feed rows, or migrating.
    Story decisions take finer locks, one per story key (`stories.take_story_locks`).
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOCKS[what]})")


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent, safe when nodes start together).

    Nodes that start at the same moment would otherwise both create the tables; on PostgreSQL
    an advisory lock makes the second wait and then find the schema current. On SQLite the
    migration's `BEGIN IMMEDIATE` already serialises them.

    An empty database gets the declared schema (`schema.metadata`) and the newest revision's
    stamp in one transaction, the way Alembic's docs describe for new installs; tests check
    that the migrations build exactly that schema and that Alembic reads the stamp. Alembic
    (about 9 MB of modules) is imported only to upgrade an older database, so a daemon never
    holds it in memory otherwise.
    """
    try:
        if current_revision(engine) == HEAD_REVISION:
            return
    except DBAPIError as exc:
        raise connect_problem(engine, exc) from None
    from monitor.store import schema

    with engine.begin() as conn:
        serialise(conn, "migrate")
        if _revision(conn) == HEAD_REVISION:  # another node migrated while we waited
            return
        existing = set(inspect(conn).get_table_names())
        if not existing & ({_VERSION_TABLE.name} | set(schema.metadata.tables)):
            schema.metadata.create_all(conn)
            _VERSION_TABLE.create(conn)
            conn.execute(_VERSION_TABLE.insert().values(version_num=HEAD_REVISION))
            analyse(conn)
            return
        from alembic import command
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        analyse(conn)


def analyse(conn: Connection, *tables: str) -> None:
    """Give PostgreSQL's planner statistics of `tables` (default: all) now, not when autovacuum
    gets to them: new tables and indexes were read by sequential scans until it did."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("ANALYZE " + ", ".join(tables) if tables else "ANALYZE")


# Alembic's own version table, as it creates it (alembic/ddl/impl.py, version_table_impl).
_VERSION_TABLE = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


def current_revision(engine: Engine) -> str | None:
    """The schema revision Alembic recorded in the database (None for an empty database)."""
    with engine.connect() as conn:
        return _revision(conn)


def _revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return str(rows[0]) if len(rows) == 1 else None


def reclaim_dead_leases(
    conn: Connection, table: Table, *, host: str, now: float, me: str | None = None
) -> int:
    """Clear leases held by processes of this host that no longer exist.

    Owners are `host:pid:nonce`. A daemon killed with SIGKILL leaves its leases behind; on
    restart the same host can tell they are orphans (no such pid) and take the work back at
    once instead of waiting for the lease to expire. Other hosts' leases expire on their own.
    An owner with this process's own pid but not `me` (this process's owner) is a previous
    run that had the same pid, as a container's pid 1 always does: gone too.
    """
    owners = conn.execute(
        select(table.c.lease_owner)
        .where(table.c.lease_owner.is_not(None), table.c.lease_until > now)
        .distinct()
    ).scalars()
    dead = [o for o in owners if _orphaned(str(o), host, me)]
    if not dead:
        return 0
    res = conn.execute(
        update(table)
        .where(table.c.lease_owner.in_(dead))
        .values(lease_owner=None, lease_until=None)
    )
    return int(res.rowcount)


def _orphaned(owner: str, host: str, me: str | None = None) -> bool:
    parts = owner.split(":")
    if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
        return False
    if int(parts[1]) == os.getpid():
        return me is not None and owner != me
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def check_database(url: str) -> str:
    """What `monitor check` says about the database: reachable, and which schema it has.

    Opens nothing that does not exist: a SQLite file that is not there yet is reported as to
    be created (its folder is checked). Raises `DatabaseError`.
    """
    engine = make_engine(url)
    try:
        path = engine.url.database or ""
        if (
            engine.dialect.name == "sqlite"
            and path not in ("", ":memory:")
            and not Path(path).exists()
        ):
            return f"{path} will be created on the first run"
        try:
            revision = current_revision(engine)
        except DBAPIError as exc:
            raise connect_problem(engine, exc) from None
    finally:
        engine.dispose()
    return describe_revision(revision)


def describe_revision(revision: str | None) -> str:
    if revision is None:
        return "empty, the schema will be created on the first run"
    if revision == HEAD_REVISION:
        return f"schema {revision} (current)"
    if revision.isdigit() and int(revision) < int(HEAD_REVISION):
        return f"schema {revision}, will be upgraded to {HEAD_REVISION} on the first run"
    raise DatabaseError(
        f"database: its schema revision {revision!r} is newer than this version of monitor"
        f" knows ({HEAD_REVISION}): upgrade monitor, or set `database` to another database"
    )
