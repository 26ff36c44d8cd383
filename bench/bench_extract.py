"""Extraction on: 200 feeds x 10 new items whose links are real article pages, end to end.

    python bench/bench_extract.py                   # 200 feeds, monitor then direct trafilatura
    python bench/bench_extract.py --feeds 50 --repeat 2
    python bench/bench_extract.py --profile         # cProfile of the daemon's process (stderr)
    python bench/bench_extract.py --workers-ab 1000 --repeat 2  # worker path vs trafilatura

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

Each tool runs in a fresh process; the page server is outside its tree. Reported: articles
per second (wall), CPU of the whole tree, and the peak PSS of the tree (the tool's process and
every process below it, the forkserver's workers included) and of each process (`Tree`). The
ratio is monitor's throughput over direct's; the issue's target is at least 0.8, and a tree
PSS under 250 MB.
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
import threading
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

    def stats(self) -> dict[str, int]:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.2.1:{self.port}/_stats") as r:
            return json.loads(r.read())  # type: ignore[no-any-return]

    def cpu(self) -> float:
        return bench_fetch.cpu_seconds(self.proc.pid)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


# --------------------------------------------------------------------------- memory and CPU


def _rollup(pid: int) -> dict[str, int]:
    vals: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[-1] == "kB":
            vals[key] = int(parts[0])
    return vals


def _label(pid: int) -> str:
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    text = " ".join(a.decode(errors="replace") for a in args if a)
    if "forkserver" in text:  # the server, or a worker it forked (same command line)
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        return "worker" if ppid != os.getpid() else "forkserver"
    if "resource_tracker" in text:
        return "resource tracker"
    if pid == os.getpid():
        return "main"
    return "worker"


def tree_cpu() -> float:
    """CPU seconds of this process and every process below it, live or reaped."""
    t = os.times()
    total = t.user + t.system + t.children_user + t.children_system
    ticks = os.sysconf("SC_CLK_TCK")
    for pid in bench_fetch.descendants(os.getpid()):
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in f[11:15]) / ticks  # utime stime cutime cstime
    return total


class Tree(threading.Thread):
    """Every 250 ms: PSS and USS (private pages) of this process and all its descendants; keeps
    the peak of the summed PSS, each process's peak, and a coarse series (one sample a
    second) of the summed PSS for the profile."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.pss_mb = 0.0
        self.procs: dict[int, dict[str, Any]] = {}
        self.series: list[float] = []

    def run(self) -> None:
        tick = 0
        while not self.stop.wait(0.25):
            tick += 1
            total = 0
            for pid in [os.getpid(), *bench_fetch.descendants(os.getpid())]:
                try:
                    r = _rollup(pid)
                    label = self.procs.get(pid, {}).get("label") or _label(pid)
                except OSError:
                    continue
                pss = r.get("Pss", 0)
                uss = r.get("Private_Clean", 0) + r.get("Private_Dirty", 0)
                total += pss
                p = self.procs.setdefault(pid, {"label": label, "pss": 0.0, "uss": 0.0})
                p["pss"] = max(p["pss"], pss / 1024)
                p["uss"] = max(p["uss"], uss / 1024)
            self.pss_mb = max(self.pss_mb, total / 1024)
            if tick % 4 == 0:
                self.series.append(round(total / 1024))

    def summary(self) -> dict[str, Any]:
        by: dict[str, list[float]] = {}
        for p in self.procs.values():
            by.setdefault(p["label"], []).append(p["pss"])
        return {
            "tree_pss": self.pss_mb,
            "procs": {k: [round(x) for x in sorted(v, reverse=True)] for k, v in by.items()},
            "uss": {k: round(v["uss"]) for k, v in self.procs.items()},
            "series": self.series,
        }


# --------------------------------------------------------------------------- the tools


def feed_url(port: int, i: int) -> str:
    return f"http://127.0.2.{i % HOSTS + 1}:{port}/f/{i}.xml"


class _HeapWatch(threading.Thread):
    """BENCH_TRACEMALLOC=1: what the daemon's process holds when its traced heap is largest
    (a snapshot every 2 s, the largest kept), against its USS then; printed to stderr."""

    def __init__(self) -> None:
        import tracemalloc

        super().__init__(daemon=True)
        tracemalloc.start(8)
        self.best: tuple[int, Any, int] | None = None
        self.stop = threading.Event()
        self.start()

    def run(self) -> None:
        import tracemalloc

        while not self.stop.wait(2.0):
            cur, _ = tracemalloc.get_traced_memory()
            if self.best is None or cur > self.best[0]:
                uss = _rollup(os.getpid())
                private = uss.get("Private_Clean", 0) + uss.get("Private_Dirty", 0)
                self.best = (cur, tracemalloc.take_snapshot(), private)

    def report(self) -> None:
        self.stop.set()
        self.join()
        if self.best is None:
            return
        cur, snap, uss = self.best
        print(f"# traced heap {cur / 2**20:.0f} MB, USS {uss / 1024:.0f} MB", file=sys.stderr)
        for stat in snap.statistics("traceback")[:12]:
            print(f"# {stat.size / 2**20:6.1f} MB {stat.count:7d}", file=sys.stderr)
            for line in stat.traceback.format()[-6:]:
                print(f"#     {line}", file=sys.stderr)


def run_monitor(port: int, n: int, profile: bool) -> dict[str, Any]:
    from monitor.daemon import Runtime, load_checked

    with tempfile.TemporaryDirectory(prefix="bench-extract-") as d:
        tmp = Path(d)
        feeds = "\n".join(
            f'  - {{url: "{feed_url(port, i)}", allow_private: true}}' for i in range(n)
        )
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
            tree = Tree()
            tree.start()
            cpu0, own0, t0 = tree_cpu(), os.times(), time.perf_counter()
            heap = _HeapWatch() if os.environ.get("BENCH_TRACEMALLOC") else None
            polls = await rt.poll_due()
            if heap is not None:
                heap.report()
            wall = time.perf_counter() - t0
            cpu, own1 = tree_cpu() - cpu0, os.times()
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
                articles=sum(p.new for p in polls),
                extracted=bodies,
                failed=sum(p.status == "failed" for p in polls),
                **tree.summary(),
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
        tree = Tree()
        tree.start()
        cpu0, t0 = tree_cpu(), time.perf_counter()
        extracted = sum(pool.map(_direct, work, chunksize=8))
        wall = time.perf_counter() - t0
        cpu = tree_cpu() - cpu0
        tree.stop.set()
        tree.join()
    return {
        "wall": wall,
        "cpu": cpu,
        "articles": len(work),
        "extracted": extracted,
        **tree.summary(),
    }


def _ab_side(side: str, pages: int) -> dict[str, Any]:
    """One side of `--workers-ab`: `pages` pages through one worker process, and nothing
    else. direct: trafilatura in a ProcessPoolExecutor(1), as `run_direct`; monitor: the
    daemon's `WorkerPool(1).extract` (pebble, forkserver, `extract_article`, workers
    replaced every 100 tasks), 16 pages in flight as the pipeline's page slots allow."""
    from monitor.pipeline import PAGES_PER_WORKER
    from monitor.workers import WorkerPool

    srcs = load_pages()
    work = [srcs[k % len(srcs)] for k in range(pages)]
    if side == "direct":
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
            list(pool.map(_direct, srcs[:2]))
            cpu0, own0, t0 = tree_cpu(), os.times(), time.perf_counter()
            extracted = sum(pool.map(_direct, work, chunksize=8))
            wall, cpu, own1 = time.perf_counter() - t0, tree_cpu() - cpu0, os.times()
    else:
        wp = WorkerPool(1, extraction=True)

        async def main() -> tuple[float, float, Any, int]:
            await wp.extract(srcs[0], url="http://x/", timeout=30)
            slots = asyncio.Semaphore(PAGES_PER_WORKER)

            async def one(page: bytes, k: int) -> int:
                async with slots:
                    got = await wp.extract(page, url=f"http://127.0.0.1/a/{k}.html", timeout=30)
                    return 1 if got else 0

            cpu0, own0, t0 = tree_cpu(), os.times(), time.perf_counter()
            n = sum(await asyncio.gather(*(one(p, k) for k, p in enumerate(work))))
            return time.perf_counter() - t0, tree_cpu() - cpu0, own0, n

        try:
            wall, cpu, own0, extracted = asyncio.run(main())
        finally:
            wp.close()
        own1 = os.times()
    own = own1.user - own0.user + own1.system - own0.system
    return {"wall": wall, "cpu": cpu, "main_cpu": own, "extracted": extracted}


def workers_ab(pages: int, rounds: int) -> None:
    """Both sides at once, each in a fresh process with one worker: on two cores they run side
    by side and meet the same machine, whose speed here drifts by a third within an hour
    (which no sequence of whole runs can tell from a 10 % effect). Prints the worker CPU
    per page of each side: what the daemon's worker path costs over trafilatura itself."""
    res: dict[str, list[dict[str, Any]]] = {"direct": [], "monitor": []}
    for _ in range(rounds):
        procs = {
            side: subprocess.Popen(
                [sys.executable, __file__, "_ab", side, str(pages)], stdout=subprocess.PIPE
            )
            for side in res
        }
        for side, proc in procs.items():
            out, _ = proc.communicate()
            res[side].append(json.loads(out.decode().strip().splitlines()[-1]))
    print(
        f"| side, {pages} pages, 1 worker, {rounds} rounds | worker CPU ms a page "
        "| the side's own process CPU s | wall s | with text |"
    )
    print("|---|---|---|---|---|")
    per: dict[str, list[float]] = {}
    for side, runs in res.items():
        per[side] = [(x["cpu"] - x["main_cpu"]) / pages * 1000 for x in runs]
        own = ", ".join(f"{x['main_cpu']:.2f}" for x in runs)
        walls = ", ".join(f"{x['wall']:.1f}" for x in runs)
        cpus = ", ".join(f"{v:.1f}" for v in per[side])
        print(f"| {side} | {cpus} | {own} | {walls} | {runs[0]['extracted']} |")
    ratios = [m / d for m, d in zip(per["monitor"], per["direct"], strict=True)]
    print(
        f"\nworker path / trafilatura direct, CPU a page: {', '.join(f'{r:.2f}' for r in ratios)}"
    )


def run_tool(tool: str, n: int, srv: Server | None, profile: bool = False) -> dict[str, Any]:
    """One measurement in a fresh process: neither tool inherits the other's heap, and the
    page server (a child of this process) is outside the measured tree."""
    cmd = [sys.executable, __file__, "_tool", tool, str(n), str(srv.port if srv else 0)]
    scpu0 = srv.cpu() if srv else 0.0
    proc = subprocess.run(
        cmd + (["--profile"] if profile else []), stdout=subprocess.PIPE, text=True, check=True
    )
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if srv is not None:
        out["server_cpu"] = srv.cpu() - scpu0
        out.update(srv.stats())
    return out


def _procs(runs: list[dict[str, Any]]) -> str:
    """The round with the highest tree PSS: each process's own peak, by role."""
    top = max(runs, key=lambda x: x["tree_pss"])
    return "; ".join(f"{k} {', '.join(map(str, v))}" for k, v in top["procs"].items())


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "_serve":
        asyncio.run(_serve(int(sys.argv[2])))
        return
    if len(sys.argv) == 4 and sys.argv[1] == "_ab":
        print(json.dumps(_ab_side(sys.argv[2], int(sys.argv[3]))))
        return
    if len(sys.argv) >= 5 and sys.argv[1] == "_tool":
        n, port = int(sys.argv[3]), int(sys.argv[4])
        if sys.argv[2] == "monitor":
            result = run_monitor(port, n, "--profile" in sys.argv)
        else:
            result = run_direct(n)
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=1, help="rounds (medians are printed)")
    parser.add_argument("--profile", action="store_true", help="cProfile the daemon's process")
    parser.add_argument(
        "--workers-ab",
        type=int,
        metavar="PAGES",
        help="instead: the worker path against trafilatura, side by side (see workers_ab)",
    )
    args = parser.parse_args()
    if args.workers_ab:
        workers_ab(args.workers_ab, args.repeat)
        return
    print(
        f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{len(page_files())} distinct pages, {args.feeds} feeds x {ITEMS} items, "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    mon: list[dict[str, Any]] = []
    direct: list[dict[str, Any]] = []
    for r in range(args.repeat):
        if r % 2:  # alternate who goes first, so that both meet the same machine load
            direct.append(run_tool("direct", args.feeds, None))
        srv = Server()
        try:
            mon.append(run_tool("monitor", args.feeds, srv, args.profile))
        finally:
            srv.close()
        if not r % 2:
            direct.append(run_tool("direct", args.feeds, None))
        for name, x in (("monitor", mon[-1]), ("direct", direct[-1])):
            brief = {k: v for k, v in x.items() if k not in ("uss", "series")}
            print(f"# round {r + 1} {name}: {brief}", file=sys.stderr)
            print(f"#   PSS MB each second: {x['series']}", file=sys.stderr)
    med = statistics.median
    m_rate = med(x["articles"] / x["wall"] for x in mon)
    d_rate = med(x["articles"] / x["wall"] for x in direct)
    print(
        "| tool | articles | with text | wall s | articles/s | tree cpu s | main cpu s "
        "| server cpu s | tree PSS MB (peak) | peak PSS MB of each process |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| monitor (poll_due, extract on) | {mon[0]['articles']} | {mon[0]['extracted']} "
        f"| {med(x['wall'] for x in mon):.2f} | {m_rate:.0f} | {med(x['cpu'] for x in mon):.2f} "
        f"| {med(x['main_cpu'] for x in mon):.2f} | {med(x['server_cpu'] for x in mon):.2f} "
        f"| {max(x['tree_pss'] for x in mon):.0f} | {_procs(mon)} |"
    )
    print(
        f"| trafilatura direct, 2 processes | {direct[0]['articles']} "
        f"| {direct[0]['extracted']} | {med(x['wall'] for x in direct):.2f} | {d_rate:.0f} "
        f"| {med(x['cpu'] for x in direct):.2f} | | | {max(x['tree_pss'] for x in direct):.0f} "
        f"| {_procs(direct)} |"
    )
    print(f"\nmonitor / direct throughput: {m_rate / d_rate:.2f} (target >= 0.80)")


if __name__ == "__main__":
    main()
