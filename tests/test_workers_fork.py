"""How worker processes start (monitor/workers.py): forked from a forkserver that has imported
the parsers once, never from the daemon's own process, and replaced after their task quota
by a fresh fork that works as the first did. Real processes, real pages."""

from __future__ import annotations

import ctypes
import gc
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from monitor.workers import WorkerPool

PAGES = Path(__file__).parent / "data" / "articles"


def _probe() -> tuple[int, int, bool, bool, int]:
    """Run in a worker: its pid and parent, whether the parsers were there before any task
    imported them, and how many objects the forkserver froze."""
    return (
        os.getpid(),
        os.getppid(),
        "trafilatura" in sys.modules,
        "feedparser" in sys.modules,
        gc.get_freeze_count(),
    )


def _page() -> bytes:
    page = sorted(PAGES.rglob("*.html.gz"))[0]
    return gzip.decompress(page.read_bytes())


def _probes_in_a_fresh_process(pool: str, n: int, *, setup: str = "") -> tuple[int, list[Any]]:
    """`_probe` run `n` times by the pool that `pool` (an expression) builds, in a fresh
    Python process: a process has one forkserver, whose preload is read when it first
    starts, so a pool made earlier in this test process (by another test) would decide it.
    Returns that process's pid and the probes."""
    code = (
        "import asyncio, json, os\n"
        "from monitor.workers import WorkerPool\n"
        "from tests.test_workers_fork import _probe\n"
        f"{setup}\n"
        f"pool = {pool}\n"
        "async def main():\n"
        "    try:\n"
        f"        return [await pool.run(_probe, timeout=60) for _ in range({n})]\n"
        "    finally:\n"
        "        pool.close()\n"
        "print(json.dumps([os.getpid(), asyncio.run(main())]))\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root, timeout=120
    )
    assert out.returncode == 0, out.stderr
    me, probes = json.loads(out.stdout)
    return int(me), probes


def test_workers_are_forked_from_a_server_that_imported_the_parsers() -> None:
    me, probes = _probes_in_a_fresh_process("WorkerPool(2)", 4)
    for pid, parent, trafilatura, feedparser, frozen in probes:
        assert pid != me
        # The daemon's process is not the parent: the forkserver is, so nothing of the
        # daemon (event loop, sockets, threads, its heap) is in a worker.
        assert parent != me
        assert trafilatura and feedparser  # imported once, by the forkserver
        assert frozen > 10_000  # its module objects are out of the collector's way
    assert len({parent for _, parent, *_ in probes}) == 1  # one forkserver for the pool


async def test_a_worker_past_its_quota_is_a_fresh_fork_that_extracts_as_the_first() -> None:
    page = _page()
    pool = WorkerPool(1, max_tasks_per_child=3)
    try:
        pids = []
        texts = []
        for _ in range(7):
            pids.append((await pool.run(_probe, timeout=30))[0])
            got = await pool.extract(page, url="http://127.0.0.1/a.html", timeout=30)
            assert got is not None
            texts.append(got.text)
    finally:
        pool.close()
    # 14 tasks, 3 per worker: five workers in turn, each task in the one then alive.
    assert len(set(pids)) == 5
    runs = [p for i, p in enumerate(pids) if i == 0 or pids[i - 1] != p]
    assert len(runs) == len(set(runs))  # a replaced worker never comes back
    assert len(set(texts)) == 1 and len(texts[0].split()) > 20


_MALLINFO = """
import ctypes, sys
class Info(ctypes.Structure):
    names = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
    _fields_ = [(n, ctypes.c_size_t) for n in names.split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
if sys.argv[1] == "bounded":
    from monitor.extract import bound_large_allocations
    bound_large_allocations()
mapped = 0
for _ in range(5):
    before = libc.mallinfo2().hblks
    page = bytearray(300_000)  # a page body's size
    mapped += libc.mallinfo2().hblks > before
    del page
print(mapped)
"""


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="glibc 2.33 or later only")
def test_large_blocks_stay_mapped_on_their_own_once_bounded() -> None:
    """glibc maps the first large block alone, then raises its threshold and serves the next
    ones from the heap (which fragments); bounded, every one is mapped and unmapped alone."""

    def mapped(mode: str) -> int:
        out = subprocess.run(
            [sys.executable, "-c", _MALLINFO, mode], capture_output=True, text=True, check=True
        )
        return int(out.stdout)

    assert mapped("default") < 5
    assert mapped("bounded") == 5


def test_a_daemon_whose_feeds_do_not_extract_preloads_no_trafilatura(tmp_path: Path) -> None:
    """Extraction off everywhere: the forkserver imports the feed parser only (trafilatura
    preloaded but unused cost each cold `once` its import and the tree ~10 MB). A fresh
    process, since a process has one forkserver and its preload is read when it starts."""
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        f"database: sqlite:///{tmp_path}/m.db\n"
        "defaults: {extract: false}\n"
        'feeds:\n  - {url: "http://127.0.0.1:9/feed.xml", allow_private: true}\n'
    )
    _, probes = _probes_in_a_fresh_process(
        "Runtime(load_checked(CFG)).workers",
        1,
        setup=f"from monitor.daemon import Runtime, load_checked\nCFG = {str(cfg)!r}",
    )
    assert probes[0][2:4] == [False, True]  # no trafilatura; feedparser preloaded


async def test_a_pool_starts_its_workers_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pebble starts a pool's workers inside its first `schedule`, and the first one waits
    for the forkserver to start and import the parsers: on the event loop, that stalled
    every fetch in flight for ~0.2-0.3 s. The start waits here until the loop has run a
    coroutine, which it could not do if the start blocked the loop; tasks that arrive during
    the start share it."""
    import asyncio
    import threading

    import pebble

    starts: list[str] = []
    loop_ran = threading.Event()
    original = pebble.ProcessPool._start_pool

    def start(self: pebble.ProcessPool) -> None:
        starts.append(threading.current_thread().name)
        assert loop_ran.wait(10), "the event loop did not run while the pool started"
        original(self)

    monkeypatch.setattr(pebble.ProcessPool, "_start_pool", start)

    async def while_starting() -> None:
        while not starts:
            await asyncio.sleep(0.01)
        loop_ran.set()

    pool = WorkerPool(1, extraction=False)
    try:
        probes = await asyncio.gather(
            pool.run(_probe, timeout=60), pool.run(_probe, timeout=60), while_starting()
        )
    finally:
        pool.close()
    assert starts == ["worker-pool-start"]  # once, in its own thread
    assert probes[0] is not None and probes[1] is not None
    assert probes[0][0] == probes[1][0]  # one worker ran both
