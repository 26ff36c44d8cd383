"""Start-up: each command loads only the libraries it uses (import checks in a subprocess).

Speed itself is measured in bench/bench_once.py, never asserted here; what a test can hold is
that `monitor --help` loads none of the heavy libraries and `monitor check` none of the ones
that only polling uses.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = (
    "sqlalchemy",
    "aiohttp",
    "trafilatura",
    "feedparser",
    "apprise",
    "pydantic",
    "numpy",
    "httpx",
    "apscheduler",
)

# Runs `monitor ARGS` in-process as `python -m monitor` does, then lists the heavy modules.
PROBE = f"""
import runpy, sys
sys.argv = ["monitor", *sys.argv[1:]]
try:
    runpy.run_module("monitor", run_name="__main__")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
sys.stdout.flush()
print("MODULES", code, *[m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)
"""


def loaded(*args: str, cwd: Path = ROOT) -> tuple[int, set[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MONITOR_CONFIG", None)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )
    line = next(x for x in out.stderr.splitlines() if x.startswith("MODULES"))
    _, code, *mods = line.split()
    return int(code), set(mods)


def test_help_and_version_load_no_heavy_library() -> None:
    for args in (("--help",), ("--version",), ("once", "--help"), ("deliveries", "list", "-h")):
        code, mods = loaded(*args)
        assert code == 0, args
        assert mods == set(), f"monitor {' '.join(args)} loaded {sorted(mods)}"


def test_check_loads_neither_the_fetcher_nor_the_parsers() -> None:
    code, mods = loaded("check", "-c", str(ROOT / "config" / "example.yaml"))
    assert code == 0
    assert not mods & {"aiohttp", "trafilatura", "feedparser", "apprise"}, sorted(mods)
    assert "pydantic" in mods  # the probe sees what the command loaded


def test_status_loads_the_store_only(tmp_path: Path) -> None:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(f"database: sqlite:///{tmp_path}/m.db\nfeeds: []\n", encoding="utf-8")
    code, mods = loaded("status", cwd=tmp_path)  # monitor.yaml is the default config file
    assert code == 0
    assert mods == {"sqlalchemy", "pydantic"}


def test_once_without_deliveries_loads_no_delivery_client_nor_scheduler(tmp_path: Path) -> None:
    """A `once` pass that delivers nothing never imports httpx (the delivery client, built at
    the first delivery) nor APScheduler (the daemon's ticker)."""
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(f"database: sqlite:///{tmp_path}/m.db\nfeeds: []\n", encoding="utf-8")
    code, mods = loaded("once", "--progress", "never", cwd=tmp_path)
    assert code == 0
    assert "sqlalchemy" in mods and "aiohttp" in mods  # the probe sees what `once` loaded
    assert not mods & {"httpx", "apscheduler", "apprise", "trafilatura"}, sorted(mods)


def test_check_before_the_first_run_does_not_load_the_store(tmp_path: Path) -> None:
    """A SQLite file not created yet is reported without SQLAlchemy; an existing one (or any
    error) still goes through the store's check."""
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(f"database: sqlite:///{tmp_path}/m.db\nfeeds: []\n", encoding="utf-8")
    code, mods = loaded("check", cwd=tmp_path)
    assert code == 0
    assert "sqlalchemy" not in mods and "pydantic" in mods, sorted(mods)
    (tmp_path / "m.db").write_bytes(b"")
    code, mods = loaded("check", cwd=tmp_path)
    assert code == 0
    assert "sqlalchemy" in mods
