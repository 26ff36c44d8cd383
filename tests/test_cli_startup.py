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
    "jinja2",
    "pebble",
    "sqlalchemy.dialects.postgresql",  # only for a PostgreSQL database
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
print("THREADS", len(__import__("os").listdir("/proc/self/task")), file=sys.stderr)
"""


def probe(*args: str, cwd: Path = ROOT) -> tuple[int, set[str], int]:
    """`monitor ARGS`: its exit code, the heavy modules it loaded, its threads at the end."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for var in ("MONITOR_CONFIG", "OPENBLAS_NUM_THREADS"):
        env.pop(var, None)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )
    lines = out.stderr.splitlines()
    _, code, *mods = next(x for x in lines if x.startswith("MODULES")).split()
    threads = int(next(x for x in lines if x.startswith("THREADS")).split()[1])
    return int(code), set(mods), threads


def loaded(*args: str, cwd: Path = ROOT) -> tuple[int, set[str]]:
    code, mods, _ = probe(*args, cwd=cwd)
    return code, mods


def test_help_and_version_load_no_heavy_library() -> None:
    for args in (("--help",), ("--version",), ("once", "--help"), ("deliveries", "list", "-h")):
        code, mods = loaded(*args)
        assert code == 0, args
        assert mods == set(), f"monitor {' '.join(args)} loaded {sorted(mods)}"


def test_check_loads_neither_the_fetcher_nor_the_parsers() -> None:
    """Nor Jinja2 when no channel sets a template; and numpy, which the example's trained
    rule needs, runs without OpenBLAS's thread per core (they cost CPU at every start)."""
    code, mods, threads = probe("check", "-c", str(ROOT / "config" / "example.yaml"))
    assert code == 0
    assert not mods & {"aiohttp", "trafilatura", "feedparser", "apprise", "jinja2"}, sorted(mods)
    assert "pydantic" in mods and "numpy" in mods  # the probe sees what the command loaded
    assert threads == 1


def test_check_loads_jinja2_for_a_channel_template(tmp_path: Path) -> None:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        f"database: sqlite:///{tmp_path}/m.db\nfeeds: []\n"
        "channels: {console: {type: console, template: '{{ title }} {{ nosuch }}'}}\n",
        encoding="utf-8",
    )
    code, mods = loaded("check", cwd=tmp_path)
    assert code == 1  # the template names a variable no message has
    assert "jinja2" in mods


def test_status_loads_the_store_only(tmp_path: Path) -> None:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(f"database: sqlite:///{tmp_path}/m.db\nfeeds: []\n", encoding="utf-8")
    code, mods = loaded("status", cwd=tmp_path)  # monitor.yaml is the default config file
    assert code == 0
    assert mods == {"sqlalchemy", "pydantic"}


def test_once_without_deliveries_loads_no_delivery_client_nor_scheduler(tmp_path: Path) -> None:
    """A `once` pass that delivers nothing never imports httpx (the delivery client, built at
    the first delivery) nor APScheduler (the daemon's ticker) nor Jinja2 (the console channel
    renders with it at its first message); one that parses nothing not pebble (the worker
    pool is made for the first parse)."""
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(f"database: sqlite:///{tmp_path}/m.db\nfeeds: []\n", encoding="utf-8")
    code, mods = loaded("once", "--progress", "never", cwd=tmp_path)
    assert code == 0
    assert "sqlalchemy" in mods and "aiohttp" in mods  # the probe sees what `once` loaded
    unused = {"httpx", "apscheduler", "apprise", "trafilatura", "pebble", "jinja2"}
    unused.add("sqlalchemy.dialects.postgresql")
    assert not mods & unused, sorted(mods)


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
