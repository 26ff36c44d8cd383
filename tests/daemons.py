"""Running a real `monitor run` in a test, and watching what it connects to.

The daemon tests share the same steps: start `python -m monitor run --config CFG` with this
checkout on its path and its log in a file, wait for a condition (its health port answering,
the store holding rows) up to a generous deadline, ask its HTTP endpoints, and stop it with
SIGTERM. The in-process fetch and delivery tests share a spy on the event loop's TCP connects.
"""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for a daemon's health or web port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, bytes]:
    """GET `url`: (status, body), for error statuses too."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_for(
    pred: Callable[[], object], timeout: float = 60, *, what: str = "the condition"
) -> float:
    """Poll `pred` until it is true; return the seconds that took. A generous `timeout` costs
    nothing when all is well and keeps a loaded machine from failing the test."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if pred():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def start_daemon(
    cfg: Path, log: Path, *, wrapper: list[str] | None = None
) -> subprocess.Popen[bytes]:
    """`monitor run --config CFG` with stdout and stderr appended to `log`. `wrapper` is a
    script and its arguments that run the command line given after `--` (tests/storefault.py).
    """
    run = ["run", "--config", str(cfg)]
    start = [*wrapper, "--"] if wrapper else ["-m", "monitor"]
    argv = [sys.executable, *start, *run]
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=ENV, cwd=ROOT)


def stop_daemon(proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    """SIGTERM, then its exit status; a daemon that does not stop in time is killed (and the
    test then fails on the status, not by hanging)."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def connect_spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Record every TCP connect(2) the event loop makes, as (address, port).

    A connect to a non-loopback address is recorded and refused here, so that even a broken
    guard sends no packet off this machine.
    """
    attempts: list[tuple[str, int]] = []
    real = asyncio.selector_events.BaseSelectorEventLoop.sock_connect

    async def spy(self: Any, sock: socket.socket, address: Any) -> Any:
        attempts.append((address[0], address[1]))
        if not ipaddress.ip_address(address[0]).is_loopback:
            raise ConnectionRefusedError(f"test: no packet to {address[0]}")
        return await real(self, sock, address)

    monkeypatch.setattr(asyncio.selector_events.BaseSelectorEventLoop, "sock_connect", spy)
    return attempts
