"""Two nodes on one PostgreSQL database: each node's console shows the same alerts, and a pause
made on one node's console stops the other node from leasing the feed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from monitor.daemon import Daemon, Runtime, load_checked
from monitor.metrics import Metrics
from monitor.web.context import from_daemon
from tests.feedserver import NewsSite
from tests.webconsole import ITEMS, TOKEN, client_for, login, write_config

pytestmark = pytest.mark.slow


def test_two_nodes_share_the_console(tmp_path: Path, pg_url: str) -> None:
    with NewsSite() as site:
        site.feed("/feed.xml", ITEMS)
        cfg = write_config(tmp_path, site)
        cfg.write_text(cfg.read_text().replace(f"sqlite:///{tmp_path}/monitor.db", pg_url))
        a = Runtime(load_checked(cfg), config_path=str(cfg))
        b = Runtime(load_checked(cfg), config_path=str(cfg))
        try:
            asyncio.run(a.run_cycle())  # node A polls and alerts
            ca = client_for(from_daemon(Daemon(a), Metrics()))
            cb = client_for(from_daemon(Daemon(b), Metrics()))
            auth = {"Authorization": f"Bearer {TOKEN}"}
            seen_a = ca.get("/api/v1/alerts", headers=auth).json()["alerts"]
            seen_b = cb.get("/api/v1/alerts", headers=auth).json()["alerts"]
            assert len(seen_a) == 2 and seen_a == seen_b
            (rule,) = cb.get("/api/v1/rules", headers=auth).json()["rules"]
            assert rule["per_day"]["matches"][-1] == 2  # floor() on PostgreSQL
            first = seen_a[0]["id"]
            assert cb.get(f"/api/v1/alerts/{first}", headers=auth).json()["story"]["sources"]
            # Pause on B's console; A may not lease the feed even when it is due.
            csrf = login(cb, "olga")
            (feed,) = cb.get("/api/v1/feeds").json()["feeds"]
            assert (
                cb.post(
                    f"/api/v1/feeds/{feed['id']}/poll", headers={"X-CSRF-Token": csrf}
                ).status_code
                == 200
            )
            assert (
                cb.post(
                    f"/api/v1/feeds/{feed['id']}/pause", headers={"X-CSRF-Token": csrf}
                ).status_code
                == 200
            )
            later = time.time() + 5
            assert a.store.feeds.lease_due(a.owner, limit=5, lease=60, now=later) == []
            assert (
                cb.post(
                    f"/api/v1/feeds/{feed['id']}/resume", headers={"X-CSRF-Token": csrf}
                ).status_code
                == 200
            )
            leased = a.store.feeds.lease_due(a.owner, limit=5, lease=60, now=later)
            assert [f.id for f in leased] == [feed["id"]]
            a.store.feeds.release(leased[0], a.owner)
            # Each node polls once more (304 both times): both consoles show the same ratio.
            for node in (a, b):
                node.store.feeds.poll_now(time.time())
                asyncio.run(node.run_cycle())
            for c in (ca, cb):
                (seen,) = c.get("/api/v1/feeds", headers=auth).json()["feeds"]
                assert (seen["polls"], seen["not_modified"]) == (3, 2)
                assert seen["not_modified_ratio"] == pytest.approx(0.667)
        finally:
            asyncio.run(a.aclose())
            asyncio.run(b.aclose())


def test_the_password_hash_command(tmp_path: Path) -> None:
    import subprocess
    import sys

    from monitor.web.auth import verify_password

    root = Path(__file__).resolve().parents[1]
    res = subprocess.run(
        [sys.executable, "-m", "monitor.web.auth"],
        input="a long passphrase\n",
        capture_output=True,
        text=True,
        timeout=60,
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )
    assert res.returncode == 0, res.stderr
    assert verify_password("a long passphrase", res.stdout.strip())
    short = subprocess.run(
        [sys.executable, "-m", "monitor.web.auth"],
        input="short\n",
        capture_output=True,
        text=True,
        timeout=60,
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )
    assert short.returncode == 1 and "at least 8" in short.stderr
