"""`monitor once` as cron runs it: exit codes, feeds skipped in backoff, --force, workers."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli import ROOT, monitor
from feedserver import Item, NewsSite

from monitor.cli.cycle import once_cycle
from monitor.daemon import Runtime, load_checked


@pytest.fixture
def site() -> Iterator[NewsSite]:
    with NewsSite() as s:
        for n in range(3):
            s.feed(
                f"/f{n}.xml", [Item(f"Story {n}.{i}", f"/a/{n}-{i}", f"{n}-{i}") for i in (1, 2)]
            )
        yield s


def write_config(tmp: Path, site: NewsSite, feeds: list[str]) -> Path:
    lines = "\n".join(
        f'  - {{url: "{site.url}{path}", name: "Feed {path}", allow_private: true}}'
        for path in feeds
    )
    cfg = tmp / "monitor.yaml"
    cfg.write_text(
        f"database: sqlite:///{tmp}/monitor.db\n"
        "defaults: {interval: 1s, min_interval: 1s, extract: false}\n"
        f"feeds:\n{lines}\n"
        "channels: {console: {type: console}}\n",
        encoding="utf-8",
    )
    return cfg


def test_a_pass_where_every_feed_answers_304_starts_no_worker_process(
    tmp_path: Path, site: NewsSite
) -> None:
    cfg = write_config(tmp_path, site, ["/f0.xml", "/f1.xml", "/f2.xml"])

    async def cycle() -> tuple[list[str], bool]:
        rt = Runtime(load_checked(cfg), config_path=str(cfg))
        try:
            result = await once_cycle(rt, force=False)
            started = rt.workers.started
        finally:
            await rt.aclose()
        return sorted(p.status for p in result.polls), started

    statuses, started = asyncio.run(cycle())
    assert statuses == ["new"] * 3 and started  # the first pass parses: workers ran
    statuses, started = asyncio.run(cycle())
    assert statuses == ["not_modified"] * 3  # every feed answered 304 ...
    assert not started  # ... so no worker process was started
    assert multiprocessing.active_children() == []
    assert site.hits["/f0.xml"] == 2


def test_once_exits_3_when_a_feed_failed_then_skips_it_in_backoff_until_forced(
    tmp_path: Path, site: NewsSite
) -> None:
    cfg = write_config(tmp_path, site, ["/f0.xml", "/missing.xml"])
    first = monitor("once", "-c", str(cfg))
    assert first.returncode == 3, first.stderr
    assert "Traceback" not in first.stderr
    assert f"{site.url}/missing.xml" in first.stderr and "404" in first.stderr
    assert "polled 2 feeds (1 failed, 0 skipped in backoff)" in first.stderr

    second = monitor("once", "-c", str(cfg))
    assert second.returncode == 0, second.stderr  # the failing feed was not polled
    skipped = [line for line in second.stderr.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 1 and "Feed /missing.xml" in skipped[0]
    assert "in backoff after 1 failure(s), due 20" in skipped[0]  # an ISO 8601 UTC time
    assert site.hits["/missing.xml"] == 1

    forced = monitor("once", "--force", "-c", str(cfg))
    assert forced.returncode == 3, forced.stderr
    assert site.hits["/missing.xml"] == 2
    assert not [line for line in forced.stderr.splitlines() if line.startswith("skipped")]
    assert "(1 failed, 0 skipped in backoff)" in forced.stderr


def test_once_reads_monitor_yaml_from_the_working_folder_and_is_quiet_off_a_tty(
    tmp_path: Path, site: NewsSite
) -> None:
    write_config(tmp_path, site, ["/f0.xml"])
    res = monitor("once", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("polled 1 feeds (0 failed")
    assert "polling:" not in res.stderr  # no progress bar when stderr is not a terminal


def test_progress_bar_when_asked_and_config_from_monitor_config(
    tmp_path: Path, site: NewsSite
) -> None:
    cfg = write_config(tmp_path, site, ["/f0.xml", "/f1.xml"])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MONITOR_CONFIG": str(cfg)}
    res = subprocess.run(
        [sys.executable, "-m", "monitor", "once", "--progress", "always"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=ROOT,  # no monitor.yaml here: the file comes from $MONITOR_CONFIG
    )
    assert res.returncode == 0, res.stderr
    assert "polling:  50%" in res.stderr and "| 1/2 [" in res.stderr  # tqdm's bar
    assert "polled 2 feeds (0 failed" in res.stderr
