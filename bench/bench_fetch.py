"""Fetching N feeds like a feed reader: cold (first poll of all) and warm (1 % changed).

    python bench/bench_fetch.py                       # N = 200 and 2,000, every tool
    python bench/bench_fetch.py --n 200 --tools monitor,pool
    python bench/bench_fetch.py --n 200 --tools monitor,newsboat --repeat 10   # medians, wins
    python bench/bench_fetch.py --n 200 --tools monitor+rules,monitor+web,monitor+web+sse --repeat 5
    python bench/bench_fetch.py --profile             # where the monitor's time goes, N = 2,000

A loopback server (its own process, asyncio, HTTP/1.1 keep-alive) serves N synthetic RSS 2.0
feeds built from real AG News items (`shared/corpora/news/ag_news/train_subset.csv`), 10 items
each, spread over 50 loopback addresses (127.0.1.1-50) as real feeds are spread over hosts.
Each feed has an ETag and a Last-Modified and answers a matching conditional GET with 304.
Cold: every feed polled once from an empty state. Warm: 1 % of feeds gain one item, then every
feed is polled again. The server counts requests and 304s.

Tools, each in a fresh process so its peak RSS is its own:
  * monitor: the real code path, `Runtime.poll_due()` with a SQLite store, the fetcher, the
    worker pool (`fetch.workers` processes; started before timing, as in a running daemon),
    the shipped rules, `extract: false` on every feed (so the work equals a feed reader's).
  * monitor+rules: the same with the shipped rules (config/rules/*.yaml) loaded.
  * monitor+web, monitor+web+sse: monitor+rules with a `web:` section, the console served as
    `monitor run` serves it (uvicorn in the same loop, the stages recorded for /metrics), and
    for +sse one client reading the live timeline (/events) throughout: the console's cost.
  * pool: a plain ThreadPoolExecutor(16) of httpx + feedparser.parse with ETag handling, state
    in memory, no store: the floor for "feedparser in Python".
  * newsboat (Debian package): `newsboat -x reload` with `reload-threads 8` and a urls file.
  * rss2email (PyPI): `r2e run --no-send` (it fetches one feed after another).
CPU time is user + system of the tool's process and its children (the monitor's workers).
Peak RSS is VmHWM (monitor, pool) or ru_maxrss (newsboat, r2e) of the main process; for the
monitor it is followed by its largest child's peak and, in brackets, the peak of the whole
process tree's summed RSS and summed PSS (sampled every 50 ms; PSS counts shared pages once).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import html
import io
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The corpora folder: $MONITOR_CORPORA, else ../shared/corpora beside the checkout.
CORPORA = Path(os.environ.get("MONITOR_CORPORA") or ROOT.parent / "shared" / "corpora")
AG_NEWS = CORPORA / "news" / "ag_news" / "train_subset.csv"
HOSTS = 50
ITEMS = 10
CHANGED = 0.01
EPOCH = datetime(2026, 11, 1, tzinfo=UTC)
EMPTY_RSS = b"<rss version='2.0'><channel><title>warm-up</title></channel></rss>"

# --------------------------------------------------------------------------- the feed server


def load_texts() -> list[str]:
    with AG_NEWS.open(newline="", encoding="utf-8") as f:
        return [row["text"] for row in csv.DictReader(f)]


def host_of(i: int) -> str:
    return f"127.0.1.{i % HOSTS + 1}"


class Site:
    """N feeds; feed i at version v lists AG News items i*10+v .. i*10+v+9, newest first."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.texts = load_texts()
        self.version = [0] * n
        self.cache: dict[tuple[int, int], bytes] = {}
        self.requests = 0
        self.not_modified = 0
        self.bytes = 0

    def body(self, i: int) -> bytes:
        v = self.version[i]
        key = (i, v)
        if key not in self.cache:
            self.cache[key] = self._render(i, v)
        return self.cache[key]

    def _render(self, i: int, v: int) -> bytes:
        items = []
        for k in range(ITEMS - 1, -1, -1):
            row = (i * ITEMS + v + k) % len(self.texts)
            text = self.texts[row]
            words = text.split()
            title = " ".join(words[:10])
            published = EPOCH + timedelta(minutes=v + k)
            items.append(
                f"<item><title>{html.escape(title)}</title>"
                f"<link>http://{host_of(i)}/a/{i}/{v + k}.html</link>"
                f'<guid isPermaLink="false">feed{i}-item{v + k}</guid>'
                f"<pubDate>{format_datetime(published)}</pubDate>"
                f"<category>news</category>"
                f"<description>{html.escape(text)}</description></item>"
            )
        return (
            '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
            f"<title>Feed {i}</title><link>http://{host_of(i)}/</link>"
            f"<description>Synthetic feed {i} of AG News items</description>"
            f"{''.join(items)}</channel></rss>"
        ).encode()

    def validators(self, i: int) -> tuple[str, str]:
        v = self.version[i]
        modified = format_datetime(EPOCH + timedelta(minutes=v), usegmt=True)
        return f'"f{i}-v{v}"', modified

    def change(self, fraction: float, seed: int) -> list[int]:
        rng = random.Random(seed)
        chosen = rng.sample(range(self.n), max(1, round(self.n * fraction)))
        for i in chosen:
            self.version[i] += 1
        return chosen

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                status, extra, body = self.respond(target, headers)
                if method == "HEAD":
                    body = b""
                out = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *extra]
                writer.write(("\r\n".join(out) + "\r\n\r\n").encode() + body)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    def respond(self, target: str, headers: dict[str, str]) -> tuple[str, list[str], bytes]:
        path, _, query = target.partition("?")
        if path.startswith("/_ctl/"):
            return self.control(path, query)
        if not (path.startswith("/f/") and path.endswith(".xml")):
            return "404 Not Found", [], b""
        i = int(path[3:-4])
        if not 0 <= i < self.n:
            return "404 Not Found", [], b""
        self.requests += 1
        etag, modified = self.validators(i)
        inm = headers.get("if-none-match")
        ims = headers.get("if-modified-since")
        if inm == etag or (inm is None and ims == modified):
            self.not_modified += 1
            return "304 Not Modified", [f"ETag: {etag}", f"Last-Modified: {modified}"], b""
        body = self.body(i)
        self.bytes += len(body)
        extra = [
            "Content-Type: application/rss+xml; charset=utf-8",
            f"ETag: {etag}",
            f"Last-Modified: {modified}",
        ]
        return "200 OK", extra, body

    def control(self, path: str, query: str) -> tuple[str, list[str], bytes]:
        if path == "/_ctl/stats":
            stats = {"requests": self.requests, "not_modified": self.not_modified}
            stats["bytes"] = self.bytes
            return "200 OK", ["Content-Type: application/json"], json.dumps(stats).encode()
        if path == "/_ctl/reset":
            self.requests = self.not_modified = self.bytes = 0
            return "200 OK", [], b"ok"
        if path == "/_ctl/change":
            seed = int(query.split("=", 1)[1]) if query.startswith("seed=") else 0
            changed = self.change(CHANGED, seed)
            return "200 OK", [], json.dumps(changed).encode()
        return "404 Not Found", [], b""


async def serve(n: int) -> None:
    site = Site(n)
    for i in range(n):  # render every body up front: serving must cost next to nothing
        site.body(i)
    ports = []
    servers = []
    for h in range(HOSTS):
        server = await asyncio.start_server(site.handle, f"127.0.1.{h + 1}", 0, backlog=1024)
        servers.append(server)
        ports.append(server.sockets[0].getsockname()[1])
    print(json.dumps(ports), flush=True)
    await asyncio.Event().wait()


class Server:
    """The feed server in its own process (so its CPU is not counted against a tool)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "_serve", "--n", str(n)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.ports: list[int] = json.loads(self.proc.stdout.readline())

    def url(self, i: int) -> str:
        return f"http://{host_of(i)}:{self.ports[i % HOSTS]}/f/{i}.xml"

    def urls(self) -> list[str]:
        return [self.url(i) for i in range(self.n)]

    def control(self, what: str) -> Any:
        import httpx

        r = httpx.get(f"http://127.0.1.1:{self.ports[0]}/_ctl/{what}", trust_env=False)
        r.raise_for_status()
        return r.json() if what == "stats" else r.text

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


# --------------------------------------------------------------------------- measurement


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int, *, reaped: bool = False) -> float:
    """utime + stime of `pid`; with `reaped`, also of the children it has waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    end = 15 if reaped else 13  # utime, stime[, cutime, cstime]
    return sum(int(f) for f in fields[11:end]) / ticks


def children(pid: int) -> list[int]:
    """Live child processes of `pid`, whichever of its threads started them (pebble starts
    replacement workers from its manager thread: /proc/PID/task/PID/children misses those)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Every live process below `pid`: the parse workers are the grandchildren of the
    daemon, forked by multiprocessing's forkserver."""
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


def process_cpu() -> float:
    """CPU seconds of this process, every live process below it (the forkserver and its
    workers) and the children each has reaped (workers replaced after `max_tasks_per_child`:
    without those, a phase in which a worker was replaced lost that worker's whole CPU time,
    even below zero)."""
    t = os.times()
    live = 0.0
    for pid in descendants(os.getpid()):
        with contextlib.suppress(OSError):  # exited between the listing and the read
            live += cpu_seconds(pid, reaped=True)
    return t.user + t.system + t.children_user + t.children_system + live


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return 0


def _pss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


class TreeMemory(threading.Thread):
    """Samples the memory of this process and its children (parse workers, multiprocessing's
    resource tracker): every 50 ms the peak of their summed RSS and each child's own peak RSS
    (also for workers replaced during the run), every 250 ms the peak of their summed PSS
    (shared pages counted once, split between the processes that map them; reading it costs
    the kernel about 0.6 ms a process, too much for every sample)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.rss_mb = self.pss_mb = 0.0
        self.child_hwm: dict[int, float] = {}

    def run(self) -> None:
        me = os.getpid()
        tick = 0
        while not self.stop.wait(0.05):
            tick += 1
            rss = pss = 0
            for pid in [me, *descendants(me)]:
                try:
                    rss += _status_kb(pid, "VmRSS:")
                    if tick % 5 == 0:
                        pss += _pss_kb(pid)
                    if pid != me:
                        self.child_hwm[pid] = _status_kb(pid, "VmHWM:") / 1024
                except OSError:
                    continue  # exited between the listing and the read
            self.rss_mb = max(self.rss_mb, rss / 1024)
            self.pss_mb = max(self.pss_mb, pss / 1024)


# --------------------------------------------------------------------------- tools


WEB_CFG = """
web:
  listen: "127.0.0.1:0"
  users: {bench: {token: "bench-token-0123456789", role: read}}
"""


async def open_console(rt: Any, sse: int) -> tuple[Any, list[asyncio.Task[None]]]:
    """`monitor+web`: the console served as `monitor run` serves it (the stages recorded for
    /metrics); `monitor+web+sse`: also `sse` clients reading the live timeline (/events)."""
    import httpx

    from monitor.daemon import Daemon
    from monitor.web.server import start_web

    daemon = Daemon(rt)
    web = await start_web(daemon)
    assert web is not None
    events: list[int] = []

    async def reader() -> None:
        headers = {"Authorization": "Bearer bench-token-0123456789"}
        url = f"http://127.0.0.1:{web.port}/events?after=0"
        async with (
            httpx.AsyncClient(timeout=None, trust_env=False) as client,
            client.stream("GET", url, headers=headers) as r,
        ):
            async for line in r.aiter_lines():
                if line.startswith("event: alert"):
                    events.append(1)

    tasks = [asyncio.create_task(reader()) for _ in range(sse)]
    await asyncio.sleep(0.5)  # the streams are open before timing
    return web, tasks


def run_monitor(
    srv: Server, tmp: Path, profile: bool, rules: bool = False, web: str = ""
) -> dict[str, Any]:
    from monitor.daemon import Runtime, load_checked

    feeds = "\n".join(
        f'  - {{url: "{u}", name: "feed {i}", allow_private: true}}'
        for i, u in enumerate(srv.urls())
    )
    cfg = tmp / "monitor.yaml"
    cfg.write_text(f"""
database: sqlite:///{tmp}/monitor.db
log_level: WARNING
defaults: {{interval: 10m, extract: false}}
include: [{f'"{ROOT}/config/rules/*.yaml"' if rules else ""}]
include_outside: {"true" if rules else "false"}
{WEB_CFG if web else ""}
feeds:
{feeds}
""")
    rt = Runtime(load_checked(cfg), config_path=str(cfg))
    rt.freeze()  # as `Daemon.run` does (`once` does not)
    out: dict[str, Any] = {}

    async def main() -> None:
        from monitor.feeds import parse_feed  # noqa: F401 - warm the import in this process

        # A running daemon has its workers up: start them before timing.
        await asyncio.gather(
            *(
                rt.workers.parse_feed(EMPTY_RSS, url="", content_type=None, timeout=30)
                for _ in range(rt.settings.fetch.workers * 2)
            ),
            return_exceptions=True,
        )
        server, readers = await open_console(rt, 1 if web == "sse" else 0) if web else (None, [])
        tree = TreeMemory()
        tree.start()
        for phase in ("cold", "warm"):
            if phase == "warm":
                srv.control("change?seed=1")
            srv.control("reset")
            rt.store.feeds.poll_now(time.time())
            cpu0, own0, t0 = process_cpu(), os.times(), time.perf_counter()
            polls = await rt.poll_due()
            wall = time.perf_counter() - t0
            cpu = process_cpu() - cpu0
            own1 = os.times()
            failed = [p for p in polls if p.status == "failed"]
            out[phase] = {
                "wall": wall,
                "cpu": cpu,
                "main_user": own1.user - own0.user,
                "main_sys": own1.system - own0.system,
                "polled": len(polls),
                "failed": len(failed),
                "first_error": failed[0].error if failed else None,
                "new": sum(p.new for p in polls),
                **srv.control("stats"),
            }
        tree.stop.set()
        tree.join()
        out["workers_rss"] = max(tree.child_hwm.values(), default=0.0)
        out["tree_rss"], out["tree_pss"] = tree.rss_mb, tree.pss_mb
        if server is not None:
            await server.stop()
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await rt.aclose()

    if profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        asyncio.run(main())
        prof.disable()
        stats = pstats.Stats(prof, stream=sys.stderr)
        stats.sort_stats("cumulative").print_stats(35)
        stats.sort_stats("tottime").print_stats(25)
    else:
        asyncio.run(main())
    out["rss"] = vm_hwm_mb(os.getpid())
    return out


def run_pool(srv: Server, tmp: Path, profile: bool) -> dict[str, Any]:
    import feedparser
    import httpx

    client = httpx.Client(trust_env=False, timeout=30, limits=httpx.Limits(max_connections=32))
    state: dict[str, tuple[str | None, str | None]] = {}

    def one(url: str) -> int:
        etag, modified = state.get(url, (None, None))
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if modified:
            headers["If-Modified-Since"] = modified
        r = client.get(url, headers=headers)
        if r.status_code == 304:
            return 0
        parsed = feedparser.parse(
            io.BytesIO(r.content),
            response_headers={"content-type": r.headers.get("content-type", "")},
        )
        state[url] = (r.headers.get("etag"), r.headers.get("last-modified"))
        return len(parsed.entries)

    out: dict[str, Any] = {}
    with ThreadPoolExecutor(16) as ex:
        for phase in ("cold", "warm"):
            if phase == "warm":
                srv.control("change?seed=1")
            srv.control("reset")
            cpu0, t0 = process_cpu(), time.perf_counter()
            entries = sum(ex.map(one, srv.urls()))
            out[phase] = {
                "wall": time.perf_counter() - t0,
                "cpu": process_cpu() - cpu0,
                "entries": entries,
                **srv.control("stats"),
            }
    out["rss"] = vm_hwm_mb(os.getpid())
    return out


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run `cmd`; wall time, CPU time and peak RSS from wait4's rusage."""
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a chatty tool never blocks
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        errors.seek(0)
        err = errors.read().decode(errors="replace")[-300:]
    return {
        "wall": wall,
        "cpu": ru.ru_utime + ru.ru_stime,
        "rss": ru.ru_maxrss / 1024,
        "rc": proc.returncode,
        "stderr": err.strip() or None,
    }


def run_external(name: str, srv: Server, tmp: Path) -> dict[str, Any]:
    env = dict(os.environ, HOME=str(tmp), XDG_CONFIG_HOME=str(tmp), XDG_DATA_HOME=str(tmp))
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        env.pop(var, None)
    if name == "newsboat":
        if not shutil.which("newsboat"):
            return {"error": "newsboat is not installed (apt-get install newsboat)"}
        (tmp / "urls").write_text("\n".join(srv.urls()) + "\n")
        (tmp / "config").write_text("reload-threads 8\nshow-read-feeds yes\n")
        cmd = [
            "newsboat",
            "-x",
            "reload",
            "-u",
            str(tmp / "urls"),
            "-C",
            str(tmp / "config"),
            "-c",
            str(tmp / "cache.db"),
        ]
    else:
        r2e = shutil.which("r2e")
        if not r2e:
            return {"error": "rss2email is not installed (pip install rss2email)"}
        from rss2email.feeds import Feeds

        (tmp / "r2e.cfg").write_text(
            "[DEFAULT]\nto = bench@example.org\nsame-server-fetch-interval = 0\n"
        )
        feeds = Feeds(configfiles=[str(tmp / "r2e.cfg")], datafile_path=str(tmp / "r2e.json"))
        feeds.load(require=False)
        for i, url in enumerate(srv.urls()):
            feeds.new_feed(name=f"f{i}", url=url, to="bench@example.org")
        feeds.save_config()
        feeds.save_feeds()
        cmd = [
            r2e,
            "-c",
            str(tmp / "r2e.cfg"),
            "-d",
            str(tmp / "r2e.json"),
            "run",
            "--no-send",
        ]
    out: dict[str, Any] = {}
    for phase in ("cold", "warm"):
        if phase == "warm":
            if name == "newsboat":
                # newsboat 2.21 stores a feed's ETag / Last-Modified only on its second reload
                # (newsboat#2734): give it that reload untimed, so warm measures its 304 path.
                timed(cmd, tmp, env)
            srv.control("change?seed=1")
        srv.control("reset")
        out[phase] = {**timed(cmd, tmp, env), **srv.control("stats")}
    out["rss"] = max(out["cold"]["rss"], out["warm"]["rss"])
    return out


def feedparser_cost(n: int = 300) -> dict[str, float]:
    """Milliseconds to parse one of the bench's 10-item feeds: feedparser alone (defaults and
    as the monitor calls it) and the monitor's whole `parse_feed`."""
    import feedparser

    from monitor.feeds import parse_feed

    site = Site(n)
    bodies = [site.body(i) for i in range(n)]

    def ms(fn: Any) -> float:
        times = []
        for b in bodies:
            t0 = time.perf_counter()
            fn(b)
            times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)

    return {
        "feedparser_default_ms": ms(lambda b: feedparser.parse(io.BytesIO(b))),
        "feedparser_monitor_ms": ms(
            lambda b: feedparser.parse(
                io.BytesIO(b), sanitize_html=False, resolve_relative_uris=False
            )
        ),
        "parse_feed_ms": ms(lambda b: parse_feed(b, url="http://127.0.1.1/f.xml")),
        "feed_kb": statistics.mean(len(b) for b in bodies) / 1024,
    }


# --------------------------------------------------------------------------- driver


def tool_main(args: argparse.Namespace) -> None:
    """`_tool NAME`: run one tool against an already running server, print JSON."""
    srv = Server.__new__(Server)
    srv.n = args.n
    srv.ports = json.loads(args.ports)
    with tempfile.TemporaryDirectory(prefix=f"bench-{args.tool}-") as d:
        tmp = Path(d)
        if args.tool in ("monitor", "monitor+rules"):
            res = run_monitor(srv, tmp, args.profile, rules=args.tool == "monitor+rules")
        elif args.tool in ("monitor+web", "monitor+web+sse"):
            web = "sse" if args.tool.endswith("sse") else "web"
            res = run_monitor(srv, tmp, args.profile, rules=True, web=web)
        elif args.tool == "pool":
            res = run_pool(srv, tmp, args.profile)
        else:
            res = run_external(args.tool, srv, tmp)
    print(json.dumps(res))


def run_tool(tool: str, n: int, srv: Server, profile: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "_tool", tool, "--n", str(n), "--ports", json.dumps(srv.ports)]
    if profile:
        cmd.append("--profile")
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    except subprocess.TimeoutExpired:
        return {"error": "did not finish within 20 minutes"}
    if profile:
        print(res.stderr, file=sys.stderr)
    if res.returncode != 0:
        return {"error": res.stderr.strip().splitlines()[-1] if res.stderr else "failed"}
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def fmt_row(n: int, tool: str, r: dict[str, Any]) -> str:
    if "error" in r:
        return f"| {n:>5} | {tool:<9} | {r['error']} |||||||"
    c, w = r["cold"], r["warm"]
    workers = f" + {r['workers_rss']:.0f}" if "workers_rss" in r else ""
    if "tree_rss" in r:
        workers += f" (tree {r['tree_rss']:.0f} / PSS {r['tree_pss']:.0f})"
    exits = {c.get("rc", 0), w.get("rc", 0)} - {0}
    if exits:
        workers += f" (exit {','.join(map(str, sorted(exits)))}: {w.get('stderr') or ''})"
    main = f"{c['main_user']:.2f} / {c['main_sys']:.2f}" if "main_user" in c else "-"
    return (
        f"| {n:>5} | {tool:<9} | {c['wall']:6.2f} | {c['cpu']:6.2f} | {main} | {w['wall']:6.2f} "
        f"| {w['cpu']:6.2f} | {r['rss']:.0f}{workers} | {c['requests']}/{w['requests']} "
        f"| {w['not_modified']} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd")
    p = sub.add_parser("_serve")
    p.add_argument("--n", type=int, required=True)
    p = sub.add_parser("_tool")
    p.add_argument("tool")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--ports", required=True)
    p.add_argument("--profile", action="store_true")
    parser.add_argument("--n", type=int, action="append", help="feeds (repeatable)")
    parser.add_argument("--tools", default="monitor,pool,newsboat,rss2email")
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of every tool (medians and wins printed)"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the monitor, N=2000")
    args = parser.parse_args()
    if args.cmd == "_serve":
        asyncio.run(serve(args.n))
        return
    if args.cmd == "_tool":
        tool_main(args)
        return
    sizes = args.n or ([2000] if args.profile else [200, 2000])
    tools = ["monitor"] if args.profile else args.tools.split(",")
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.platform()}"
    )
    cost = feedparser_cost()
    print(
        f"# one {cost['feed_kb']:.1f} KB 10-item feed: feedparser.parse "
        f"{cost['feedparser_default_ms']:.2f} ms (defaults), "
        f"{cost['feedparser_monitor_ms']:.2f} ms (sanitize/resolve off), "
        f"monitor parse_feed {cost['parse_feed_ms']:.2f} ms"
    )
    print(
        "| feeds | tool      | cold s | cold cpu | cold main user/sys | warm s | warm cpu "
        "| peak RSS MB | requests cold/warm | 304s warm |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    summary: list[str] = []
    for n in sizes:
        srv = Server(n)
        runs: dict[str, list[dict[str, Any]]] = {tool: [] for tool in tools}
        try:
            for _ in range(args.repeat):
                for tool in tools:  # tools alternate, so each pair shares the machine's mood
                    res = run_tool(tool, n, srv, args.profile)
                    runs[tool].append(res)
                    print(fmt_row(n, tool, res), flush=True)
        finally:
            srv.close()
        if args.repeat > 1:
            summary += summarise(n, runs)
    if summary:
        print(
            "\n| feeds | tool | runs | cold s median (min-max) | warm s median | cold faster than |"
        )
        print("|---|---|---|---|---|---|")
        print("\n".join(summary))


def summarise(n: int, runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Medians over the repeated runs, and in how many runs each tool's cold poll beat each
    other tool's cold poll of the same round."""
    ok = {t: [r for r in rs if "error" not in r] for t, rs in runs.items()}
    rows = []
    for tool, rs in ok.items():
        if not rs:
            continue
        cold = [r["cold"]["wall"] for r in rs]
        warm = [r["warm"]["wall"] for r in rs]
        beats = []
        for other, ors in runs.items():
            pairs = [
                (a, b)
                for a, b in zip(runs[tool], ors, strict=True)
                if other != tool and "error" not in a and "error" not in b
            ]
            if pairs:
                won = sum(a["cold"]["wall"] < b["cold"]["wall"] for a, b in pairs)
                beats.append(f"{other} {won}/{len(pairs)}")
        rows.append(
            f"| {n} | {tool} | {len(rs)} | {statistics.median(cold):.2f} "
            f"({min(cold):.2f}-{max(cold):.2f}) | {statistics.median(warm):.2f} "
            f"| {', '.join(beats)} |"
        )
    return rows


if __name__ == "__main__":
    main()
