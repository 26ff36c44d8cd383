"""`monitor once` as cron runs it, next to newsboat and a thread pool; and start-up commands.

    python bench/bench_once.py                    # 200 and 2,000 feeds, 3 rounds, + start-up
    python bench/bench_once.py --n 200 --repeat 5
    python bench/bench_once.py --startup-only     # --help, --version, check, status
    python bench/bench_once.py --n 200 --profile  # cProfile of one cold and one warm `once`
    python bench/bench_once.py --code ../main     # the same, running another checkout's code

The feed server, the thread-pool tool and the newsboat runner are bench/bench_fetch.py's (a
loopback server in its own process: N synthetic 10-item RSS feeds of real AG News items over
50 loopback addresses, ETag + Last-Modified, 304 on a matching conditional GET). Per round and
per tool, in alternating order so that each tool meets the same machine load:

  * monitor: `python -m monitor once -c monitor.yaml`, a fresh process each time (what cron
    pays, start-up included), SQLite, `extract: false`, no rules. Cold: an empty database.
    Warm: 1 % of the feeds gain an item, then `once` again on the same database.
  * pool: ThreadPoolExecutor(16) of httpx + feedparser with ETag handling (bench_fetch).
  * newsboat: `newsboat -x reload` with its own urls file and cache (bench_fetch; its warm
    run follows an untimed reload, as newsboat stores validators only on a second reload).
  * imports: `python -c "import pydantic_settings, feedparser"`, no feeds at all: what any
    `once` in Python with the project's chosen config and feed libraries pays before its
    first request (its row is the same command in both columns).

Wall seconds are reported (medians over the rounds, min-max); CPU is user + system of the
process, its children and whatever it left running (this script is their subreaper: the
resource tracker of the worker processes outlives `once` by a moment). Start-up commands:
median wall and CPU of repeated runs.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import platform
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import bench_fetch  # noqa: E402  (the server, the pool and newsboat runners)

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
ENV.pop("MONITOR_CONFIG", None)
# As installed (pip writes bytecode): without .pyc files every run would compile the
# monitor package from source, 0.3 s of CPU that no user pays.
ENV.pop("PYTHONDONTWRITEBYTECODE", None)


def become_subreaper() -> None:
    """Adopt what a measured command leaves running (Linux PR_SET_CHILD_SUBREAPER), so that
    its CPU is counted too: multiprocessing's resource tracker outlives `once` by a moment,
    and wait4 on `once` alone missed its ~0.05-0.1 s."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)


def timed_tree(cmd: list[str], cwd: Path, env: dict[str, str], keep: set[int]) -> dict[str, Any]:
    """`bench_fetch.timed`, plus the CPU of the processes the command left behind (adopted by
    this one as subreaper; `keep`: our own children, such as the feed server). Wall time
    stays the command's own: what cron waits for."""
    res = bench_fetch.timed(cmd, cwd, env)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for pid in set(bench_fetch.children(os.getpid())) - keep:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    res["left_behind_cpu"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    res["cpu"] += res["left_behind_cpu"]
    return res


def monitor_config(tmp: Path, urls: list[str]) -> Path:
    feeds = "\n".join(f'  - {{url: "{u}", allow_private: true}}' for u in urls)
    cfg = tmp / "monitor.yaml"
    cfg.write_text(
        f"database: sqlite:///{tmp}/monitor.db\n"
        "log_level: WARNING\n"
        "defaults: {extract: false}\n"
        f"feeds:\n{feeds}\n",
        encoding="utf-8",
    )
    return cfg


def monitor_cmd(cfg: Path, profile: Path | None = None) -> list[str]:
    prof = ["-m", "cProfile", "-o", str(profile)] if profile else []
    return [sys.executable, *prof, "-m", "monitor", "once", "--progress", "never", "-c", str(cfg)]


def run_monitor(srv: bench_fetch.Server, profile: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-once-") as d:
        tmp = Path(d)
        cfg = monitor_config(tmp, srv.urls())
        for phase in ("cold", "warm"):
            if phase == "warm":
                srv.control("change?seed=1")
            srv.control("reset")
            prof = tmp / f"{phase}.prof" if profile else None
            res = timed_tree(monitor_cmd(cfg, prof), tmp, ENV, {srv.proc.pid})
            out[phase] = {**res, **srv.control("stats")}
            if prof is not None:
                print(f"\n## cProfile, monitor once, {phase}, {srv.n} feeds", file=sys.stderr)
                stats = pstats.Stats(str(prof), stream=sys.stderr)
                stats.sort_stats("cumulative").print_stats(30)
    return out


#: What any `once` must import, whatever else it does: pydantic-settings (the project's
#: chosen config library) to read its config, feedparser to parse a changed feed. Timed in
#: the same rounds as the tools, it is the floor under a Python `once` on this machine.
FLOOR = "import pydantic_settings, feedparser"


def run_floor(srv: bench_fetch.Server) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as d:
        cmd = [sys.executable, "-c", FLOOR]
        keep = {srv.proc.pid}  # the feed server is our child too: not to be waited for
        return {phase: timed_tree(cmd, Path(d), ENV, keep) for phase in ("cold", "warm")}


def run_tool(tool: str, srv: bench_fetch.Server) -> dict[str, Any]:
    if tool == "monitor":
        return run_monitor(srv)
    if tool == "imports":
        return run_floor(srv)
    return bench_fetch.run_tool(tool, srv.n, srv, False)


def cell(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def round_rows(n: int, tools: list[str], repeat: int) -> list[str]:
    srv = bench_fetch.Server(n)
    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in tools}
    try:
        for r in range(repeat):
            order = tools if r % 2 == 0 else tools[::-1]  # alternate who goes first
            for tool in order:
                res = run_tool(tool, srv)
                runs[tool].append(res)
                print(f"# round {r + 1}, {n} feeds, {tool}: {brief(res)}", file=sys.stderr)
    finally:
        srv.close()
    rows = []
    for tool in tools:
        ok = [x for x in runs[tool] if "error" not in x]
        if not ok:
            err = runs[tool][0].get("error", "failed") if runs[tool] else "not run"
            rows.append(f"| {n} | {tool} | {err} | | | | |")
            continue
        bad = sorted({x[p].get("rc", 0) for x in ok for p in ("cold", "warm")} - {0})
        note = f" (exit {bad})" if bad else ""
        label = f"`{FLOOR}` alone" if tool == "imports" else tool
        rows.append(
            f"| {n} | {label}{note} | {len(ok)} | {cell([x['cold']['wall'] for x in ok])} "
            f"| {cell([x['warm']['wall'] for x in ok])} "
            f"| {statistics.median(x['cold']['cpu'] for x in ok):.2f} "
            f"| {statistics.median(x['warm']['cpu'] for x in ok):.2f} |"
        )
    return rows


def brief(res: dict[str, Any]) -> str:
    if "error" in res:
        return str(res["error"])
    c, w = res["cold"], res["warm"]
    if "requests" not in c:  # the import floor: no requests
        return f"cold {c['wall']:.2f} s, warm {w['wall']:.2f} s"
    return (
        f"cold {c['wall']:.2f} s ({c['requests']} requests), warm {w['wall']:.2f} s"
        f" ({w['not_modified']} x 304)" + (f" stderr: {w['stderr']}" if w.get("stderr") else "")
    )


def startup_rows(repeat: int) -> list[str]:
    """Start-up commands, each run `repeat` times in a fresh process."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as d:
        tmp = Path(d)
        status_cfg = tmp / "monitor.yaml"
        status_cfg.write_text(
            f"database: sqlite:///{tmp}/monitor.db\nfeeds: []\n", encoding="utf-8"
        )
        subprocess.run(  # status reads an existing, current database
            [sys.executable, "-m", "monitor", "once", "-c", str(status_cfg)],
            env=ENV,
            capture_output=True,
            check=True,
        )
        example = tmp / "example"
        shutil.copytree(ROOT / "config", example)
        commands = {
            "monitor --help": ["--help"],
            "monitor --version": ["--version"],
            "monitor check (config/example.yaml)": ["check", "-c", str(example / "example.yaml")],
            "monitor status (empty database)": ["status", "-c", str(status_cfg)],
        }
        for name, args in commands.items():
            runs = [
                timed_tree([sys.executable, "-m", "monitor", *args], example, ENV, set())
                for _ in range(repeat)
            ]
            failed = [r for r in runs if r["rc"] != 0]
            note = f" (exit {failed[0]['rc']}: {failed[0]['stderr']})" if failed else ""
            rows.append(
                f"| {name}{note} | {repeat} | {cell([r['wall'] * 1000 for r in runs])} "
                f"| {statistics.median(r['cpu'] * 1000 for r in runs):.0f} |"
            )
        bare = [bench_fetch.timed([sys.executable, "-c", "pass"], tmp, ENV) for _ in range(repeat)]
        rows.append(
            f"| python -c pass (the floor) | {repeat} | {cell([r['wall'] * 1000 for r in bare])}"
            f" | {statistics.median(r['cpu'] * 1000 for r in bare):.0f} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, action="append", help="feeds (repeatable)")
    parser.add_argument(
        "--tools",
        default="monitor,pool,newsboat,imports",
        help="comma-separated; `imports` times the import floor (FLOOR) in the same rounds",
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds (medians are printed)")
    parser.add_argument("--startup-repeat", type=int, default=15)
    parser.add_argument("--startup-only", action="store_true")
    parser.add_argument("--no-startup", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile `once` (stderr)")
    parser.add_argument(
        "--code", type=Path, help="run the monitor of this checkout (a before/after comparison)"
    )
    args = parser.parse_args()
    if args.code is not None:
        ENV["PYTHONPATH"] = str(args.code.resolve())
    become_subreaper()
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.platform()}, "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}, code {ENV['PYTHONPATH']}"
    )
    if args.profile:
        srv = bench_fetch.Server((args.n or [200])[0])
        try:
            print(brief(run_monitor(srv, profile=True)))
        finally:
            srv.close()
        return
    if not args.startup_only:
        print(
            "| feeds | tool | rounds | cold s median (min-max) | warm s median (min-max) "
            "| cold cpu s | warm cpu s |"
        )
        print("|---|---|---|---|---|---|---|")
        for n in args.n or [200, 2000]:
            print("\n".join(round_rows(n, args.tools.split(","), args.repeat)), flush=True)
    if not args.no_startup:
        print("\n| command | runs | wall ms median (min-max) | cpu ms median |")
        print("|---|---|---|---|")
        print("\n".join(startup_rows(args.startup_repeat)))


if __name__ == "__main__":
    main()
