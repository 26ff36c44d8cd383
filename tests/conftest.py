"""Shared fixtures: the real-data folder, a real PostgreSQL server started for the test run,
store URLs; and the `corpora` group (sweeps over the whole corpora, run only when
MONITOR_CORPORA names a corpora folder, see tests/corpora.py)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from corpora import DATA, ENV, corpora_root, layout_problem

#: How many `corpora` tests this run deselected because MONITOR_CORPORA is not set.
_NOT_RUN = pytest.StashKey[int]()


def pytest_configure(config: pytest.Config) -> None:
    root = corpora_root()
    problem = layout_problem(root) if root is not None else None
    if problem:
        raise pytest.UsageError(f"{ENV}: {problem} (it must name a corpora folder)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without MONITOR_CORPORA the sweeps over the whole corpora are deselected, not failed."""
    if corpora_root() is not None:
        return
    sweeps = [item for item in items if item.get_closest_marker("corpora")]
    if sweeps:
        items[:] = [item for item in items if not item.get_closest_marker("corpora")]
        config.hook.pytest_deselected(items=sweeps)
    config.stash[_NOT_RUN] = len(sweeps)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    not_run = config.stash.get(_NOT_RUN, 0)
    if not_run:
        terminalreporter.write_line(
            f"corpus sweeps not run: set {ENV}=/path/to/corpora to run {not_run} tests"
        )


@pytest.fixture
def corpora(request: pytest.FixtureRequest) -> Path:
    """The real-data folder (corpora layout): tests/data, or the whole corpora that
    MONITOR_CORPORA names for a test marked `corpora`."""
    root = corpora_root()
    if request.node.get_closest_marker("corpora"):
        assert root is not None, f"a `corpora` test runs only with {ENV} set"
        return root
    return DATA


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1; yields a URL to its `postgres` database.

    PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres` user
    that Debian's package creates (.ci/run installs it on a fresh machine).
    """
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.fail(
            "PostgreSQL server binaries (initdb, pg_ctl) are not installed; "
            ".ci/run installs Debian's postgresql package"
        )
    base = Path(tempfile.mkdtemp(prefix="monitor-pg-"))
    data = base / "data"
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(base, user="postgres")
        base.chmod(0o700)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    subprocess.run(
        [
            *prefix,
            initdb,
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
    )
    opts = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={base} "
        "-c fsync=off -c max_connections=50"
    )
    subprocess.run(
        [*prefix, pg_ctl, "-D", str(data), "-o", opts, "-l", str(base / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(postgres_server: str) -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    for _ in range(50):
        try:
            with psycopg.connect(
                postgres_server.replace("postgresql://", "postgresql://"), autocommit=True
            ) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            break
        except psycopg.OperationalError:
            time.sleep(0.1)
    return postgres_server.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on SQLite and on a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/monitor.db"
    return str(request.getfixturevalue("pg_url"))
