"""A small threaded HTTP server on a loopback address, for fetch tests.

Each test registers the responses it needs as routes (path -> handler function); the server
records every accepted connection and every request, so a test can prove that something was
never contacted. Helpers below build the hostile responses: trickles, huge bodies, gzip bombs,
redirect loops.
"""

from __future__ import annotations

import functools
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socket import socket
from typing import Any

Handler = Callable[["RequestHandler"], None]


@dataclass
class Seen:
    """One request as the server saw it."""

    path: str
    headers: dict[str, str]
    started: float
    finished: float = 0.0


class RequestHandler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: connections == requests

    def do_GET(self) -> None:
        seen = Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, time.monotonic())
        self.server.owner.requests.append(seen)
        route = self.server.owner.routes.get(self.path.split("?", 1)[0])
        try:
            if route is None:
                send(self, 404, b"no such route")
            else:
                route(self)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, which is what most hostile tests want
        finally:
            seen.finished = time.monotonic()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: HostileServer

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.owner.connections += 1
        return True


@dataclass
class HostileServer:
    """`with HostileServer() as srv: srv.routes["/x"] = ...; srv.url("/x")`."""

    host: str = "127.0.0.1"
    routes: dict[str, Handler] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    connections: int = 0
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._server = _Server((self.host, 0), RequestHandler)
        self._server.owner = self
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, path: str = "/") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()


# --------------------------------------------------------------------------- responses


def send(
    handler: RequestHandler,
    status: int,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> None:
    handler.send_response(status)
    all_headers = {"Content-Length": str(len(body)), **(headers or {})}
    for name, value in all_headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def fixed(status: int, body: bytes = b"", **headers: str) -> Handler:
    """Always the same response. Header names use `_` for `-` (Retry_After=...)."""
    named = {k.replace("_", "-"): v for k, v in headers.items()}
    return lambda h: send(h, status, body, named)


def redirect(status: int, location: str) -> Handler:
    return fixed(status, b"", Location=location)


def trickle(handler: RequestHandler) -> None:
    """A 200 whose body arrives one byte every 50 ms, forever."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/rss+xml")
    handler.end_headers()
    handler.wfile.write(b"<rss>")
    while not handler.server.owner.stopping.is_set():
        handler.wfile.write(b" ")
        handler.wfile.flush()
        time.sleep(0.05)


def stall(handler: RequestHandler) -> None:
    """A 200 that sends the start of a feed and then nothing, until the server stops."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/rss+xml")
    handler.end_headers()
    handler.wfile.write(b"<rss>")
    handler.wfile.flush()
    handler.server.owner.stopping.wait()


def huge(size: int, *, declare_length: bool = False) -> Handler:
    """A 200 with `size` bytes of body, streamed in 64 KiB writes."""

    def handle(handler: RequestHandler) -> None:
        handler.send_response(200)
        if declare_length:
            handler.send_header("Content-Length", str(size))
        handler.end_headers()
        block = b"x" * 65536
        sent = 0
        while sent < size and not handler.server.owner.stopping.is_set():
            handler.wfile.write(block)
            sent += len(block)

    return handle


@functools.cache
def gzip_bomb(megabytes: int = 200) -> bytes:
    """`megabytes` MB of zeros, gzipped (about 1/1000 of that on the wire)."""
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    return b"".join(_chunks(z, zeros, megabytes)) + z.flush()


def _chunks(z: Any, block: bytes, count: int) -> Iterator[bytes]:
    for _ in range(count):
        yield z.compress(block)


def slow(seconds: float, body: bytes = b"ok") -> Handler:
    def handle(handler: RequestHandler) -> None:
        time.sleep(seconds)
        send(handler, 200, body)

    return handle


def closed_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port
