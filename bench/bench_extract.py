"""Extraction on: 200 feeds x 10 new items whose links are real article pages, end to end.

    python bench/bench_extract.py                   # 200 feeds, monitor then direct trafilatura
    python bench/bench_extract.py --feeds 50 --repeat 2
    python bench/bench_extract.py --profile         # cProfile of the daemon's process (stderr)

Pages: the real article pages of the corpora ($MONITOR_CORPORA, or ../shared/corpora beside the
repository): scrapinghub-aeb, trafilatura-eval and readability-test-pages, cycled so that every
item links to its own URL. A loopback server in its own process (asyncio, pages held in memory,
50 loopback addresses so the per-host limit does not serialise them) serves N RSS feeds of 10
items each and the pages.

  * monitor: the daemon's `Runtime.poll_due` in this process, SQLite, `extract: true`, no rules,
    workers started before timing (as a running daemon has them). One cold pass: every item is
    new, so each page is fetched, extracted in a worker, fingerprinted and committed.
  * direct: `trafilatura.extract` (the same options as `monitor.extract`) on the same pages in
    a ProcessPoolExecutor of two processes started before timing: the ceiling for two cores.

Reported: articles per second (wall), CPU of the whole tree, and the peak PSS and summed RSS of
this process and its children (sampled by bench_fetch.TreeMemory). The ratio is monitor's
throughput over direct's; the issue's target is at least 0.8, and a tree PSS under 250 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gzip
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import bench_fetch  # noqa: E402  (process CPU and tree memory sampling)

HOSTS = 50
ITEMS = 10


def corpora() -> Path:
    env = os.environ.get("MONITOR_CORPORA")
    return Path(env) if env else ROOT.parent.parent / "shared" / "corpora"


def page_files() -> list[Path]:
    base = corpora() / "articles"
    files = sorted((base / "scrapinghub-aeb" / "html").glob("*.html.gz"))
    files += sorted((base / "trafilatura-eval" / "html").glob("*.html.gz"))
    files += sorted((base / "readability-test-pages").glob("*/source.html*"))
    if not files:
        sys.exit(f"no article pages under {base} (set MONITOR_CORPORA)")
    return files


def read_page(f: Path) -> bytes:
    data = f.read_bytes()
    return gzip.decompress(data) if f.suffix == ".gz" else data


def load_pages() -> list[bytes]:
    """Every real article page of the corpora, as served bytes."""
    return [read_page(f) for f in page_files()]


def feed_xml(port: int, i: int) -> bytes:
    host = f"127.0.2.{i % HOSTS + 1}"
    items = "".join(
        f"<item><title>Article {i}-{j}</title><link>http://{host}:{port}/a/{i}/{j}.html</link>"
        f"<guid>http://{host}:{port}/a/{i}/{j}.html</guid>"
        f"<pubDate>Tue, 01 Dec 2026 12:{j:02d}:00 GMT</pubDate>"
        f"<description>Item {j} of feed {i}.</description></item>"
        for j in range(ITEMS)
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>feed {i}</title>'
        f"<link>http://{host}:{port}/</link><description>bench</description>{items}"
        "</channel></rss>"
    ).encode()


# --------------------------------------------------------------------------- the server


async def _serve(port: int) -> None:
    pages = load_pages()
    stats = {"pages": 0, "feeds": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1].decode()
                if target.startswith("/f/"):
                    body, ctype = (
                        feed_xml(port, int(target[3:].split(".")[0])),
                        "application/rss+xml",
                    )
                    stats["feeds"] += 1
                elif target.startswith("/a/"):
                    _, _, i, j = target.split("/")
                    k = int(i) * ITEMS + int(j.split(".")[0])
                    body, ctype = pages[k % len(pages)], "text/html; charset=utf-8"
                    stats["pages"] += 1
                elif target == "/_stats":
                    body, ctype = json.dumps(stats).encode(), "application/json"
                else:
                    body, ctype = b"not found", "text/plain"
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: "
                    + ctype.encode()
                    + b"\r\nContent-Length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, IndexError, ValueError):
            pass
        finally:
            writer.close()

    servers = [
        await asyncio.start_server(handle, f"127.0.2.{h + 1}", port, backlog=1024)
        for h in range(HOSTS)
    ]
    print("ready", flush=True)
    async with servers[0]:
        await asyncio.Event().wait()


class Server:
    def __init__(self) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.2.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "_serve", str(self.port)], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def url(self, i: int) -> str:
        return f"http://127.0.2.{i % HOSTS + 1}:{self.port}/f/{i}.xml"

    def stats(self) -> dict[str, int]:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.2.1:{self.port}/_stats") as r:
            return json.loads(r.read())  # type: ignore[no-any-return]

    def cpu(self) -> float:
        return bench_fetch.cpu_seconds(self.proc.pid)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


# --------------------------------------------------------------------------- the tools


def run_monitor(srv: Server, n: int, profile: bool) -> dict[str, Any]:
    from monitor.daemon import Runtime, load_checked

    with tempfile.TemporaryDirectory(prefix="bench-extract-") as d:
        tmp = Path(d)
        feeds = "\n".join(f'  - {{url: "{srv.url(i)}", allow_private: true}}' for i in range(n))
        cfg = tmp / "monitor.yaml"
        cfg.write_text(
            f"database: sqlite:///{tmp}/monitor.db\nlog_level: WARNING\n"
            f"defaults: {{interval: 10m, extract: true}}\nfeeds:\n{feeds}\n",
            encoding="utf-8",
        )
        rt = Runtime(load_checked(cfg), config_path=str(cfg))
        rt.freeze()  # as the daemon does
        out: dict[str, Any] = {}

        async def main() -> None:
            # A running daemon has its workers up, trafilatura imported: warm them first.
            page = read_page(page_files()[0])  # (the pages themselves are not held here)
            await asyncio.gather(
                *(
                    rt.workers.extract(page, url="http://x/", timeout=30)
                    for _ in range(rt.settings.fetch.workers * 2)
                )
            )
            tree = bench_fetch.TreeMemory()
            tree.start()
            scpu0 = srv.cpu()
            cpu0, own0, t0 = bench_fetch.process_cpu(), os.times(), time.perf_counter()
            polls = await rt.poll_due()
            wall = time.perf_counter() - t0
            cpu, own1 = bench_fetch.process_cpu() - cpu0, os.times()
            tree.stop.set()
            tree.join()
            with rt.store.engine.connect() as conn:
                from sqlalchemy import text

                bodies = conn.execute(
                    text("SELECT count(*) FROM articles WHERE body IS NOT NULL AND body != ''")
                ).scalar_one()
            out.update(
                wall=wall,
                cpu=cpu,
                main_cpu=own1.user - own0.user + own1.system - own0.system,
                server_cpu=srv.cpu() - scpu0,
                articles=sum(p.new for p in polls),
                extracted=bodies,
                failed=sum(p.status == "failed" for p in polls),
                tree_pss=tree.pss_mb,
                tree_rss=tree.rss_mb,
                workers_rss=max(tree.child_hwm.values(), default=0.0),
                **srv.stats(),
            )
            await rt.aclose()

        if profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
            asyncio.run(main())
            prof.disable()
            stats = pstats.Stats(prof, stream=sys.stderr)
            stats.sort_stats("tottime").print_stats(30)
            stats.sort_stats("cumulative").print_stats(30)
        else:
            asyncio.run(main())
        return out


def _direct(html: bytes) -> int:
    import trafilatura

    out = trafilatura.extract(
        html, fast=True, include_comments=False, with_metadata=True, output_format="json"
    )
    return 1 if out else 0


def run_direct(n: int) -> dict[str, Any]:
    pages = load_pages()
    work = [pages[k % len(pages)] for k in range(n * ITEMS)]
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as pool:
        list(pool.map(_direct, pages[:4]))  # start both processes, import trafilatura
        tree = bench_fetch.TreeMemory()
        tree.start()
        cpu0, t0 = bench_fetch.process_cpu(), time.perf_counter()
        extracted = sum(pool.map(_direct, work, chunksize=8))
        wall = time.perf_counter() - t0
        cpu = bench_fetch.process_cpu() - cpu0
        tree.stop.set()
        tree.join()
    return {
        "wall": wall,
        "cpu": cpu,
        "articles": len(work),
        "extracted": extracted,
        "tree_pss": tree.pss_mb,
        "tree_rss": tree.rss_mb,
    }


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "_serve":
        asyncio.run(_serve(int(sys.argv[2])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=1, help="rounds (medians are printed)")
    parser.add_argument("--profile", action="store_true", help="cProfile the daemon's process")
    args = parser.parse_args()
    print(
        f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{len(page_files())} distinct pages, {args.feeds} feeds x {ITEMS} items, "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    mon: list[dict[str, Any]] = []
    direct: list[dict[str, Any]] = []
    for r in range(args.repeat):
        if r % 2:  # alternate who goes first, so that both meet the same machine load
            direct.append(run_direct(args.feeds))
        srv = Server()
        try:
            mon.append(run_monitor(srv, args.feeds, args.profile))
        finally:
            srv.close()
        if not r % 2:
            direct.append(run_direct(args.feeds))
        print(f"# round {r + 1}: monitor {mon[-1]}\n#   direct {direct[-1]}", file=sys.stderr)
    med = statistics.median
    m_rate = med(x["articles"] / x["wall"] for x in mon)
    d_rate = med(x["articles"] / x["wall"] for x in direct)
    print(
        "| tool | articles | with text | wall s | articles/s | tree cpu s | main cpu s "
        "| server cpu s | tree PSS MB | tree RSS MB | worker RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| monitor (poll_due, extract on) | {mon[0]['articles']} | {mon[0]['extracted']} "
        f"| {med(x['wall'] for x in mon):.2f} | {m_rate:.0f} | {med(x['cpu'] for x in mon):.2f} "
        f"| {med(x['main_cpu'] for x in mon):.2f} | {med(x['server_cpu'] for x in mon):.2f} "
        f"| {max(x['tree_pss'] for x in mon):.0f} | {max(x['tree_rss'] for x in mon):.0f} "
        f"| {max(x['workers_rss'] for x in mon):.0f} |"
    )
    print(
        f"| trafilatura direct, 2 processes | {direct[0]['articles']} "
        f"| {direct[0]['extracted']} | {med(x['wall'] for x in direct):.2f} | {d_rate:.0f} "
        f"| {med(x['cpu'] for x in direct):.2f} | | | {max(x['tree_pss'] for x in direct):.0f} "
        f"| {max(x['tree_rss'] for x in direct):.0f} | |"
    )
    print(f"\nmonitor / direct throughput: {m_rate / d_rate:.2f} (target >= 0.80)")


if __name__ == "__main__":
    main()
