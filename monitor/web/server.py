"""uvicorn serving the console in the daemon's own event loop.

`uvicorn.Server.serve()` runs as a task of the daemon's loop (no thread, no second loop;
`Config.setup_event_loop` is never called). uvicorn's signal capture is turned off: the
daemon owns SIGINT/SIGTERM/SIGHUP and stops the server itself. The socket is bound here, so
a port in use is a one-line error naming `web.listen`, and port 0 gets a free port (tests).

A malformed request (a request line longer than h11's 16 KiB limit, garbage bytes) gets a
400 from uvicorn and one warning, without a traceback; repeats of the same warning within a
minute are dropped, so a local client cannot flood the log with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import uvicorn

from monitor.errors import ConfigError
from monitor.metrics import Metrics
from monitor.web.app import create_app
from monitor.web.context import Console, from_daemon, web_settings

if TYPE_CHECKING:
    from monitor.daemon import Daemon

log = logging.getLogger("monitor.web")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The daemon handles signals; uvicorn must not replace its handlers.
        yield


class RepeatFilter(logging.Filter):
    """Drops a log message identical to one let through less than `window` seconds ago."""

    def __init__(self, window: float = 60.0) -> None:
        super().__init__()
        self.window = window
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        key = f"{record.name}:{record.msg}"
        now = time.monotonic()
        if now - self._last.get(key, -self.window) < self.window:
            return False
        self._last[key] = now
        if len(self._last) > 1000:
            self._last.clear()
        return True


def bind(listen: str) -> socket.socket:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            [f"web.listen: cannot listen on {listen}: {exc.strerror or exc}"]
        ) from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


class WebServer:
    """The console on `listen`; `start()` returns once it accepts connections."""

    def __init__(self, console: Console, listen: str) -> None:
        self.console = console
        self.listen = listen
        self.app = create_app(console)
        self.server: _Server | None = None
        self.task: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self) -> None:
        sock = bind(self.listen)
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            http="h11",
            ws="none",
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=3,
        )
        uvicorn_log = logging.getLogger("uvicorn.error")
        if not any(isinstance(f, RepeatFilter) for f in uvicorn_log.filters):
            uvicorn_log.addFilter(RepeatFilter())
        self.server = _Server(config)
        self.task = asyncio.create_task(self.server.serve(sockets=[sock]))
        while not self.server.started:
            if self.task.done():
                self.task.result()  # raises what stopped it
                raise ConfigError([f"web.listen: the server on {self.listen} did not start"])
            await asyncio.sleep(0.01)
        host = self.listen.rpartition(":")[0]
        log.info("console and /healthz on http://%s:%d/", host, self.port)

    async def stop(self) -> None:
        if self.server is None or self.task is None:
            return
        self.console.stopping.set()  # ends server-sent event streams
        self.server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, timeout=10)


async def start_web(daemon: Daemon) -> WebServer | None:
    """The web server for a daemon's config (None when `web:` and `health_listen` are unset),
    started, with the daemon's pipeline instrumented for `/metrics`."""
    web = web_settings(daemon.rt.settings)
    if web is None:
        return None
    metrics = Metrics()
    metrics.instrument(daemon.rt)
    server = WebServer(from_daemon(daemon, metrics), web.listen)
    await server.start()
    # `Daemon.run` froze its start-up objects out of the cyclic collector before the web stack
    # was imported: freeze again, so collections during polls do not walk Starlette's,
    # uvicorn's and prometheus_client's objects (~7,000 more tracked objects; full-collection
    # time in a cold 2,000-feed poll 0.08-0.09 s -> 0.02 s).
    daemon.rt.freeze()
    return server
