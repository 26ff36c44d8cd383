"""Store faults in real processes (issue 14 items 1, 4 and 5; issue 19 items 4 and 7).

- A `monitor run` whose store refuses writes (injected at the connection by
  `tests/storefault.py`, switched by a flag file) shows it on `/healthz` (503 with the reason),
  `/readyz` and `/metrics`, logs one line when it starts and one when it ends, and polls the
  feed again within seconds of the store accepting writes.
- Every command on a read-only SQLite database (opened `?mode=ro`) is one line naming the
  database and the cause, exit 1; `monitor status` shows the condition.
- A PostgreSQL that goes down and comes back: `/healthz` answers 503 (never 500) meanwhile, and
  no feed is marked failed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.daemons import ENV, ROOT, free_port, get, start_daemon, stop_daemon, wait_for
from tests.hostile_server import HostileServer, RequestHandler
from tests.test_poll_schedule import conditional, rss

INITDB = ("--no-sync", "-E", "UTF8")

pytestmark = pytest.mark.slow


def config(tmp: Path, database: str, feed: str, port: int) -> Path:
    cfg = tmp / "monitor.yaml"
    cfg.write_text(f"""
database: "{database}"
defaults: {{interval: 1h, extract: false}}
fetch: {{workers: 1}}
daemon: {{tick: 0.2s, deliver_every: 0.5s, health_listen: "127.0.0.1:{port}"}}
feeds:
  - {{url: "{feed}", allow_private: true}}
rules:
  - {{name: items, query: 'title:item'}}
""")
    return cfg


def articles(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM articles").fetchone()[0])


def test_a_daemon_whose_disk_fills_reports_it_and_polls_again_once_space_is_back(
    tmp_path: Path,
) -> None:
    flag = tmp_path / "disk-full"
    requests: list[float] = []
    answer = conditional(rss(3))

    def handle(h: RequestHandler) -> None:
        requests.append(time.monotonic())
        if len(requests) == 1:
            flag.touch()  # the disk fills while the feed is being fetched
        answer(h)

    port = free_port()
    db = tmp_path / "monitor.db"
    with HostileServer() as srv:
        srv.routes["/f"] = handle
        cfg = config(tmp_path, f"sqlite:///{db}", srv.url("/f"), port)
        log = tmp_path / "run.log"
        wrapper = [str(ROOT / "tests" / "storefault.py"), str(flag), "full"]
        proc = start_daemon(cfg, log, wrapper=wrapper)
        try:

            def unhealthy() -> bool:
                assert proc.poll() is None, log.read_text()
                try:
                    return get(f"http://127.0.0.1:{port}/healthz")[0] == 503
                except OSError:
                    return False

            wait_for(unhealthy, timeout=60)
            status, body = get(f"http://127.0.0.1:{port}/healthz")
            health = json.loads(body)
            assert health["status"] == "unhealthy"
            assert "is full: OperationalError: database or disk is full" in health["reason"]
            assert str(db) in health["reason"]
            assert health["store"]["condition"] == "full"
            assert health["feeds"] == {"ok": 1}  # the feed keeps its health
            status, body = get(f"http://127.0.0.1:{port}/readyz")
            assert status == 503 and "is full" in json.loads(body)["checks"]["store"]
            metrics = get(f"http://127.0.0.1:{port}/metrics")[1].decode()
            assert 'monitor_store_condition{condition="full"} 1.0' in metrics
            assert 'monitor_store_condition{condition="writable"} 0.0' in metrics
            time.sleep(2)  # refused writes meanwhile: leases, the held feed's release
            assert articles(db) == 0 and len(requests) == 1
            flag.unlink()  # space is back
            took = wait_for(lambda: articles(db) == 3, timeout=30)
            wait_for(lambda: get(f"http://127.0.0.1:{port}/healthz")[0] == 200, timeout=10)
            metrics = get(f"http://127.0.0.1:{port}/metrics")[1].decode()
            assert 'monitor_store_condition{condition="writable"} 1.0' in metrics
        finally:
            code = stop_daemon(proc)
    text = log.read_text()
    assert code == 0, text
    assert took < 5, f"polled again {took:.1f} s after the store came back"  # not a lease later
    assert len(requests) == 2
    assert text.count("is full: OperationalError: database or disk is full") == 1, text
    assert text.count("writable again") == 1, text
    assert "Traceback" not in text and "failed [" not in text, text
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT failing_since, last_error, polls FROM feeds").fetchone()
    assert row == (None, None, 1)


def test_every_command_on_a_read_only_database_is_one_line(tmp_path: Path) -> None:
    with HostileServer() as srv:
        srv.routes["/f"] = conditional(rss(2))
        db = tmp_path / "monitor.db"
        cfg = config(tmp_path, f"sqlite:///{db}", srv.url("/f"), free_port())
        once = subprocess.run(
            [sys.executable, "-m", "monitor", "once", "--config", str(cfg)],
            capture_output=True,
            text=True,
            env=ENV,
            cwd=ROOT,
            timeout=120,
        )
        assert once.returncode == 0, once.stderr
        ro = f"sqlite:///file:{db}?mode=ro&uri=true"
        cfg.write_text(cfg.read_text().replace(f"sqlite:///{db}", ro))

        def monitor(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "monitor", *args, "--config", str(cfg)],
                capture_output=True,
                text=True,
                env=ENV,
                cwd=ROOT,
                timeout=120,
            )

        for command in ("run", "once"):
            res = monitor(command)
            assert res.returncode == 1, res.stderr
            assert res.stderr.strip() == (
                f"monitor {command}: database: {ro} is read-only (OperationalError: attempt to"
                " write a readonly database): make the file, its folder or the server"
                " writable, or set `database` to a writable one"
            )
        status = monitor("status")
        assert status.returncode == 0, status.stderr
        first = status.stdout.splitlines()[0]
        assert first.startswith(f"Store: {ro} is READ-ONLY (OperationalError: attempt to write")
        assert "Feeds: 1 active, 1 healthy" in status.stdout
        data = json.loads(monitor("status", "--format", "json").stdout)
        assert data["store"]["condition"] == "read-only"
        assert data["store"]["database"] == ro


class PrivatePostgres:
    """A PostgreSQL cluster of this test alone (the session's server is shared), so it can be
    stopped and started again on the same port."""

    def __init__(self, base: Path) -> None:
        import shutil

        from tests.conftest import _free_port, _pg_bin

        initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if not initdb or not pg_ctl:
            pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        self.pg_ctl = pg_ctl
        self.base = base
        self.data = base / "data"
        self.prefix: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            shutil.chown(base, user="postgres")
            base.chmod(0o700)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.port = _free_port()
        subprocess.run(
            [*self.prefix, initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", *INITDB],
            check=True,
            capture_output=True,
        )
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.log = str(base / "log")

    def start(self) -> None:
        opts = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c fsync=off"
            f" -c unix_socket_directories={self.base}"
        )
        subprocess.run(
            [
                *self.prefix,
                self.pg_ctl,
                "-D",
                str(self.data),
                "-o",
                opts,
                "-l",
                self.log,
                "-w",
                "start",
            ],
            check=True,
            capture_output=True,
        )

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(
            [*self.prefix, self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop"],
            capture_output=True,
        )


def test_a_postgresql_restart_is_a_store_condition_not_the_feeds_failure(
    tmp_path: Path,
) -> None:
    import shutil
    import tempfile

    import psycopg

    base = Path(tempfile.mkdtemp(prefix="monitor-pg-"))  # the postgres user must reach it
    pg = PrivatePostgres(base)
    pg.start()
    down = [0.0]
    requests: list[float] = []
    answers = {f"/f{i}": conditional(rss(2)) for i in range(3)}

    def handler(path: str):  # type: ignore[no-untyped-def]
        def handle(h: RequestHandler) -> None:
            requests.append(time.monotonic())
            if path == "/f0" and not down[0]:
                pg.stop()  # the database goes away while the feeds are fetched
                down[0] = time.monotonic()
            answers[path](h)

        return handle

    port = free_port()
    try:
        with HostileServer() as srv:
            for path in answers:
                srv.routes[path] = handler(path)
            cfg = config(tmp_path, pg.url, srv.url("/f0"), port)
            feeds = "".join(f'  - {{url: "{srv.url(p)}", allow_private: true}}\n' for p in answers)
            text = cfg.read_text()
            cfg.write_text(
                text[: text.index("feeds:")]
                + "feeds:\n"
                + feeds
                + "rules:"
                + (text.split("rules:", 1)[1])
            )
            log = tmp_path / "run.log"
            proc = start_daemon(cfg, log)
            try:
                wait_for(lambda: down[0] or proc.poll() is not None, timeout=60)
                assert proc.poll() is None, log.read_text()

                def answers_503() -> bool:
                    status, body = get(f"http://127.0.0.1:{port}/healthz")
                    assert status != 500, body
                    return status == 503

                wait_for(answers_503, timeout=30)
                health = json.loads(get(f"http://127.0.0.1:{port}/healthz")[1])
                assert health["store"]["condition"] == "unreachable", health
                assert "unreachable" in health["reason"]
                time.sleep(1)
                pg.start()
                back = time.monotonic()

                def stored() -> int:
                    with psycopg.connect(pg.url, autocommit=True) as conn:
                        return int(conn.execute("SELECT count(*) FROM articles").fetchone()[0])

                wait_for(lambda: stored() == 6, timeout=60)
                took = time.monotonic() - back
                wait_for(lambda: get(f"http://127.0.0.1:{port}/healthz")[0] == 200, timeout=15)
                with psycopg.connect(pg.url, autocommit=True) as conn:
                    rows = conn.execute(
                        "SELECT url, failing_since, last_error, consecutive_failures FROM feeds"
                    ).fetchall()
            finally:
                code = stop_daemon(proc)
    finally:
        pg.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)
    text = log.read_text()
    assert code == 0, text
    assert took < 10, f"the feeds were stored {took:.1f} s after PostgreSQL came back"
    assert all(r[1:] == (None, None, 0) for r in rows), rows  # no feed was blamed
    assert "failed [" not in text and "Traceback" not in text, text
    assert text.count("is unreachable") == 1, text
    assert "writable again" in text, text
