"""Make a store refuse writes, the way a full disk or a read-only database does, and recover.

The failure is injected at the connection: a SQLAlchemy dialect event (`do_execute` and its
siblings) raises the driver's own error for every write statement (`BEGIN IMMEDIATE`, INSERT,
UPDATE, DELETE) while the fault is on; reads go through, as they do on a full disk.

In a test: `with WriteFault(kind="full"):` (every engine of the process). For a daemon
subprocess: `python tests/storefault.py FLAGFILE KIND -- monitor args...` runs `monitor` with
the fault on while FLAGFILE exists, so the test switches it by creating and removing the file.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

WRITES = ("BEGIN IMMEDIATE", "INSERT", "UPDATE", "DELETE")
#: SQLite's own message and result code for each fault.
SQLITE_FAULTS = {
    "full": ("database or disk is full", 13),
    "read-only": ("attempt to write a readonly database", 8),
}


def sqlite_error(kind: str) -> sqlite3.OperationalError:
    message, code = SQLITE_FAULTS[kind]
    exc = sqlite3.OperationalError(message)
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    return exc


class WriteFault:
    """While `on` (or `active()` says so), every write statement of every engine fails."""

    def __init__(self, kind: str = "full", active: Callable[[], bool] | None = None) -> None:
        self.kind = kind
        self.on = True
        self.active = active or (lambda: self.on)
        self.refused = 0

    def _check(self, statement: str) -> None:
        if self.active() and statement.lstrip().upper().startswith(WRITES):
            self.refused += 1
            raise sqlite_error(self.kind)

    def _execute(self, cursor: Any, statement: str, *rest: Any) -> None:
        self._check(statement)

    def install(self) -> None:
        for name in ("do_execute", "do_executemany", "do_execute_no_params"):
            event.listen(Engine, name, self._execute)

    def remove(self) -> None:
        for name in ("do_execute", "do_executemany", "do_execute_no_params"):
            event.remove(Engine, name, self._execute)

    def __enter__(self) -> WriteFault:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def main(argv: list[str]) -> int:
    flag, kind, sep, *args = argv
    assert sep == "--", "usage: storefault.py FLAGFILE KIND -- monitor args..."
    WriteFault(kind, active=Path(flag).exists).install()
    from monitor.cli import main as monitor_main

    return int(monitor_main(args[1:] if args and args[0] == "monitor" else args) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
