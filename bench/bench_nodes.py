"""Cold polls of N feeds by one, two and three `monitor run` replicas on one PostgreSQL, and
by one replica on SQLite (issue 19).

    python bench/bench_nodes.py                 # 2,000 feeds
    python bench/bench_nodes.py --n 200

The feeds are bench/bench_fetch.py's loopback server (synthetic 10-item RSS feeds of real AG
News items over 50 loopback addresses), `extract: false`, one rule. PostgreSQL is a throwaway
cluster started here (initdb + pg_ctl, as tests/conftest.py does; fsync off), one database per
run. Timed: from starting the replicas to every feed having one recorded poll (read from the
database every 0.2 s), start-up of the processes included. The replicas share this machine's
cores with PostgreSQL and the feed server: on 2 cores, three replicas cannot run faster than
two, so the figures say what the cores allow, not what nodes on their own machines would.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
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

    def stop(self) -> None:
        subprocess.run(
            [*self.prefix, pg_bin("pg_ctl"), "-D", self.data, "-m", "immediate", "stop"],
            capture_output=True,
        )


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


def cold_run(database: str, replicas: int, srv: bench_fetch.Server) -> float:
    url = database.replace("postgresql://", "postgresql+psycopg://")
    with tempfile.TemporaryDirectory(prefix="bench-nodes-") as d:
        tmp = Path(d)
        cfg = config(tmp, database, srv.urls())
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
                    return time.monotonic() - started
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
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    srv = bench_fetch.Server(args.n)
    pg = Postgres()
    rows = []
    try:
        for replicas in (1, 2, 3):
            s = cold_run(pg.database(f"bench{replicas}"), replicas, srv)
            rows.append((f"PostgreSQL, {replicas} replica{'s' if replicas > 1 else ''}", s))
        with tempfile.TemporaryDirectory(prefix="bench-nodes-sqlite-") as d:
            rows.append(("SQLite, 1 replica", cold_run(f"sqlite:///{d}/monitor.db", 1, srv)))
    finally:
        pg.stop()
        srv.close()
    base = rows[0][1]
    print(f"\nCold polls of {args.n} feeds, extract off ({os.cpu_count()} cores)\n")
    print("| set-up | wall s | feeds/s | vs 1 PostgreSQL replica |")
    print("|---|---:|---:|---:|")
    for name, s in rows:
        print(f"| {name} | {s:.1f} | {args.n / s:.0f} | {base / s:.2f}x |")


if __name__ == "__main__":
    main()
