"""User errors reach the user as one clear line and an exit code, never as a traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitor.store.engine import HEAD_REVISION

ROOT = Path(__file__).resolve().parents[1]


def env() -> dict[str, str]:
    e = {**os.environ, "PYTHONPATH": str(ROOT)}
    e.pop("MONITOR_CONFIG", None)
    e.pop("MONITOR_DATABASE", None)
    return e


def monitor(*args: str, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env(),
        cwd=cwd,
    )


def config(tmp: Path, database: str, extra: str = "") -> Path:
    cfg = tmp / "monitor.yaml"
    cfg.write_text(f"database: {json.dumps(database)}\nfeeds: []\n{extra}", encoding="utf-8")
    return cfg


def one_error_line(res: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in res.stderr, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    return lines[0]


@pytest.mark.parametrize("command", ["status", "once", "check", "deliveries list"])
def test_a_sqlite_folder_that_does_not_exist_is_an_error_not_a_new_folder_tree(
    tmp_path: Path, command: str
) -> None:
    missing = tmp_path / "no" / "such" / "folder"
    cfg = config(tmp_path, f"sqlite:///{missing}/monitor.db")
    res = monitor(*command.split(), "-c", str(cfg))
    assert res.returncode == 1
    line = one_error_line(res)
    assert "database: the folder" in line and str(missing) in line and "does not exist" in line
    assert "set `database`" in line
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize(
    ("database", "expected"),
    [
        ("postgresql+pg8000://u:secret@127.0.0.1/db", "pg8000 driver for postgresql+pg8000 is not"),
        ("mysql://u@127.0.0.1/db", "unsupported database 'mysql'"),
        ("monitor.db", "is not a database URL: use sqlite:///"),
        ("postgresql://u:secret@127.0.0.1:1/db", "cannot open postgresql+psycopg://u:***@"),
    ],
)
def test_database_problems_name_the_setting_and_what_to_do(
    tmp_path: Path, database: str, expected: str
) -> None:
    cfg = config(tmp_path, database)
    for command in ("status", "check"):
        res = monitor(command, "-c", str(cfg))
        assert res.returncode == 1, res.stderr
        line = one_error_line(res)
        assert line.startswith(f"monitor {command}: database: ") and expected in line, line
        assert "secret" not in line


def test_check_reports_the_database_schema(tmp_path: Path) -> None:
    cfg = config(tmp_path, f"sqlite:///{tmp_path}/monitor.db")
    res = monitor("check", "-c", str(cfg))
    assert res.returncode == 0, res.stderr
    assert "will be created on the first run" in res.stdout
    assert not (tmp_path / "monitor.db").exists()  # check creates nothing
    assert monitor("once", "-c", str(cfg)).returncode == 0
    res = monitor("check", "-c", str(cfg))
    assert f"database: schema {HEAD_REVISION} (current)" in res.stdout


def test_a_bad_since_is_a_usage_error(tmp_path: Path) -> None:
    cfg = config(tmp_path, f"sqlite:///{tmp_path}/monitor.db")
    res = monitor("backtest", "-c", str(cfg), "--since", "7x")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "argument --since: invalid duration '7x'" in res.stderr


def test_retrying_an_unknown_delivery_names_it_and_fails(tmp_path: Path) -> None:
    cfg = config(tmp_path, f"sqlite:///{tmp_path}/monitor.db")
    res = monitor("deliveries", "retry", "4242", "-c", str(cfg))
    assert res.returncode == 1
    line = one_error_line(res)
    assert "no delivery #4242" in line
    assert "will be retried" not in res.stdout


def test_output_piped_into_head_ends_quietly(tmp_path: Path) -> None:
    cfg = config(tmp_path, f"sqlite:///{tmp_path}/m.db", "rules:\n  - {name: any, query: troops}\n")
    articles = tmp_path / "a.jsonl"
    articles.write_text(
        "".join(json.dumps({"id": f"a{i}", "title": "troops"}) + "\n" for i in range(20000)),
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "match", "-c", str(cfg), str(articles)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env(),
        cwd=ROOT,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()  # what `| head -1` reads, then it goes away
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert first.startswith(b"a0: any matched")
    assert err == "", err


def test_ctrl_c_during_start_up_exits_130_without_a_traceback(tmp_path: Path) -> None:
    fifo = tmp_path / "monitor.yaml"
    os.mkfifo(fifo)  # reading the config blocks until a writer comes: start-up is held there
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "check", "-c", str(fifo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
        cwd=ROOT,
    )
    deadline = time.monotonic() + 60
    while True:  # a non-blocking open for writing succeeds once the command opened it to read
        try:
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
    try:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        os.close(writer)
    assert proc.returncode == 130
    assert "Traceback" not in err and "interrupted" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to any folder")
def test_an_unwritable_sqlite_folder_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        cfg = config(tmp_path, f"sqlite:///{folder}/monitor.db")
        res = monitor("status", "-c", str(cfg))
    finally:
        folder.chmod(0o755)
    assert res.returncode == 1
    line = one_error_line(res)
    assert f"the folder {folder}" in line and "is not writable by this user" in line
