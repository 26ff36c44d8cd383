"""Cold polls of N feeds by one, two and three `monitor run` replicas on one PostgreSQL, and
by one replica on SQLite (issue 19).

    python bench/bench_nodes.py                 # 2,000 feeds of 20 items
    python bench/bench_nodes.py --n 200 --items 10 --replicas 1,2 --no-sqlite

The feeds are bench/bench_fetch.py's loopback server (synthetic RSS feeds of real AG News
items over 50 loopback addresses, `--items` per feed), `extract: false`, one rule.
PostgreSQL is a throwaway cluster started here (initdb + pg_ctl, as tests/conftest.py does;
fsync off), one database per run. Timed: from starting the replicas to every feed having one
recorded poll (read from the database every 0.2 s), start-up of the processes included.

The replicas share this machine's cores with PostgreSQL and the feed server: on 2 cores,
three replicas cannot run faster than two, so the wall times say what the cores allow, not
what nodes on their own machines would. That is why CPU seconds are printed beside them: of
each replica (with its parse workers) and of PostgreSQL's server processes, per 1,000 feeds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import bench_fetch  # noqa: E402  (the feed server)

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
ENV.pop("MONITOR_CONFIG", None)


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    path = found[-1] if found else shutil.which(name)
    if not path:
        raise SystemExit(f"{name} not found: install PostgreSQL's server package")
    return path


class Postgres:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="bench-nodes-pg-"))
        self.prefix: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            shutil.chown(self.base, user="postgres")
            self.base.chmod(0o700)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        data = str(self.base / "data")
        subprocess.run(
            [*self.prefix, pg_bin("initdb"), "-D", data, "-A", "trust", "-U", "postgres"],
            check=True,
            capture_output=True,
        )
        opts = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.base} -c fsync=off -c max_connections=100"
        )
        subprocess.run(
            [
                *self.prefix,
                pg_bin("pg_ctl"),
                "-D",
                data,
                "-o",
                opts,
                "-l",
                str(self.base / "log"),
                "-w",
                "start",
            ],
            check=True,
            capture_output=True,
        )
        self.data = data

    def database(self, name: str) -> str:
        admin = create_engine(
            f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres",
            isolation_level="AUTOCOMMIT",
        )
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        admin.dispose()
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def cpu(self) -> float:
        """CPU seconds of the whole server (postmaster, its backends and helpers)."""
        pid = int((Path(self.data) / "postmaster.pid").read_text().split()[0])
        return tree_cpu(pid)

    def stop(self) -> None:
        subprocess.run(
            [*self.prefix, pg_bin("pg_ctl"), "-D", self.data, "-m", "immediate", "stop"],
            capture_output=True,
        )


class FeedServer(bench_fetch.Server):
    """bench_fetch's feed server with `items` entries per feed (its module constant)."""

    def __init__(self, n: int, items: int) -> None:
        self.n = n
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "_serve", "--n", str(n), "--items", str(items)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.ports = json.loads(self.proc.stdout.readline())


def tree_cpu(pid: int) -> float:
    """CPU seconds of `pid`, the children it reaped and every live process below it (a
    replica's forkserver and its parse workers, the backends of PostgreSQL's postmaster),
    with the children each of those reaped."""
    own = bench_fetch.cpu_seconds(pid, reaped=True)
    live = 0.0
    for child in bench_fetch.descendants(pid):
        with contextlib.suppress(OSError):
            live += bench_fetch.cpu_seconds(child, reaped=True)
    return own + live


def config(tmp: Path, database: str, urls: list[str]) -> Path:
    feeds = "\n".join(f'  - {{url: "{u}", allow_private: true}}' for u in urls)
    cfg = tmp / "monitor.yaml"
    cfg.write_text(
        f"database: {database}\nlog_level: WARNING\n"
        "defaults: {extract: false, interval: 1h}\n"
        "rules:\n  - {name: markets, query: 'title:stocks'}\n"
        f"feeds:\n{feeds}\n",
        encoding="utf-8",
    )
    return cfg


#: Feeds with a recorded poll (a good one, or a failure).
DONE = "SELECT count(*) FROM feeds WHERE polls >= 1 OR last_error IS NOT NULL"


@dataclass
class Run:
    wall: float
    cpu: list[float]  # per replica, its workers included
    db_cpu: float | None  # PostgreSQL's server processes


def cold_run(
    database: str, replicas: int, srv: bench_fetch.Server, pg: Postgres | None = None
) -> Run:
    url = database.replace("postgresql://", "postgresql+psycopg://")
    with tempfile.TemporaryDirectory(prefix="bench-nodes-") as d:
        tmp = Path(d)
        cfg = config(tmp, database, srv.urls())
        db_before = pg.cpu() if pg is not None else 0.0
        started = time.monotonic()
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "monitor", "run", "-c", str(cfg)],
                cwd=tmp,
                env=ENV,
                stdout=subprocess.DEVNULL,
                stderr=open(tmp / f"node{i}.log", "w"),  # noqa: SIM115
            )
            for i in range(replicas)
        ]
        engine = create_engine(url)
        try:
            while True:
                time.sleep(0.2)
                try:
                    with engine.connect() as conn:
                        done = conn.execute(text(DONE)).scalar_one()
                except Exception:  # the schema is not there yet
                    continue
                if done >= srv.n:
                    wall = time.monotonic() - started
                    cpu = [tree_cpu(p.pid) for p in procs]
                    db = pg.cpu() - db_before if pg is not None else None
                    return Run(wall, cpu, db)
                if any(p.poll() is not None for p in procs):
                    raise SystemExit((tmp / "node0.log").read_text()[-2000:])
        finally:
            engine.dispose()
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait(timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd")
    serve = sub.add_parser("_serve")
    serve.add_argument("--n", type=int, required=True)
    serve.add_argument("--items", type=int, required=True)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--items", type=int, default=20, help="entries per feed (default 20)")
    ap.add_argument("--replicas", default="1,2,3", help="PostgreSQL runs (default 1,2,3)")
    ap.add_argument("--no-sqlite", action="store_true", help="skip the SQLite run")
    args = ap.parse_args()
    if args.cmd == "_serve":
        bench_fetch.ITEMS = args.items
        asyncio.run(bench_fetch.serve(args.n))
        return
    srv = FeedServer(args.n, args.items)
    pg = Postgres()
    rows: list[tuple[str, Run]] = []
    try:
        for replicas in (int(r) for r in args.replicas.split(",") if r):
            run = cold_run(pg.database(f"bench{replicas}"), replicas, srv, pg)
            rows.append((f"PostgreSQL, {replicas} replica{'s' if replicas > 1 else ''}", run))
        if not args.no_sqlite:
            with tempfile.TemporaryDirectory(prefix="bench-nodes-sqlite-") as d:
                rows.append(("SQLite, 1 replica", cold_run(f"sqlite:///{d}/monitor.db", 1, srv)))
    finally:
        pg.stop()
        srv.close()
    base = rows[0][1].wall
    k = args.n / 1000
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"\nCold polls of {args.n} feeds of {args.items} items, extract off"
        f" ({os.cpu_count()} cores, load average after: {load})\n"
    )
    print(
        "| set-up | wall s | feeds/s | vs first row | replicas CPU s | CPU s / 1,000 feeds"
        " (replicas) | PostgreSQL CPU s / 1,000 feeds |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rows:
        db = f"{r.db_cpu / k:.1f}" if r.db_cpu is not None else "-"
        each = " + ".join(f"{c:.1f}" for c in r.cpu)
        print(
            f"| {name} | {r.wall:.1f} | {args.n / r.wall:.0f} | {base / r.wall:.2f}x"
            f" | {each} | {sum(r.cpu) / k:.1f} | {db} |"
        )


if __name__ == "__main__":
    main()
