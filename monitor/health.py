"""Liveness and metrics over HTTP for the daemon: `GET /healthz` and `GET /metrics`.

A few dozen lines on asyncio streams rather than a web framework: the daemon answers two fixed
GET paths on a port that should stay on a private interface, and a framework would add a
dependency and a server loop for nothing. `/healthz` is 200 while the scheduler ticks and 503
when it has stalled; `/metrics` is Prometheus text from the store and the daemon's counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("monitor.health")

Snapshot = Callable[[], Awaitable[dict[str, Any]]]


def render_metrics(snap: dict[str, Any]) -> str:
    """Prometheus exposition text for a snapshot (see `Daemon.snapshot`)."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: dict[str, float]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples.items():
            lines.append(f"{name}{labels} {value:g}")

    feeds = snap.get("feeds", {})
    metric(
        "monitor_feeds",
        "gauge",
        "Active feeds by health.",
        {f'{{state="{k}"}}': float(v) for k, v in feeds.items()},
    )
    deliveries = snap.get("deliveries", {})
    metric(
        "monitor_deliveries",
        "gauge",
        "Deliveries in the outbox by status.",
        {f'{{status="{k}"}}': float(v) for k, v in deliveries.get("by_status", {}).items()},
    )
    oldest = deliveries.get("oldest_pending_age")
    metric(
        "monitor_oldest_pending_delivery_seconds",
        "gauge",
        "Age of the oldest delivery not yet sent.",
        {"": float(oldest or 0)},
    )
    counters = snap.get("counters", {})
    for name, samples in sorted(counters.items()):
        metric(
            f"monitor_{name}_total",
            "counter",
            f"{name.replace('_', ' ')} since start.",
            {f'{{kind="{k}"}}' if k else "": float(v) for k, v in samples.items()},
        )
    metric(
        "monitor_last_tick_age_seconds",
        "gauge",
        "Seconds since the scheduler last ticked.",
        {"": float(snap.get("last_tick_age", 0.0))},
    )
    return "\n".join(lines) + "\n"


class HealthServer:
    def __init__(self, listen: str, snapshot: Snapshot, *, stalled_after: float) -> None:
        host, _, port = listen.rpartition(":")
        self.host = host.strip("[]") or "127.0.0.1"
        self.port = int(port)
        self.snapshot = snapshot
        self.stalled_after = stalled_after
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        sock = self._server.sockets[0].getsockname()
        self.port = int(sock[1])
        log.info("health endpoint on http://%s:%d/healthz", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                request = await reader.readline()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
            parts = request.decode("latin-1").split()
            path = parts[1] if len(parts) >= 2 and parts[0] in ("GET", "HEAD") else ""
            if path == "/healthz":
                snap = await self.snapshot()
                ok = snap.get("last_tick_age", 0.0) <= self.stalled_after
                body = json.dumps({"status": "ok" if ok else "stalled", **snap}).encode()
                await self._reply(writer, 200 if ok else 503, "application/json", body)
            elif path == "/metrics":
                body = render_metrics(await self.snapshot()).encode()
                await self._reply(writer, 200, "text/plain; version=0.0.4", body)
            else:
                await self._reply(writer, 404, "text/plain", b"not found\n")
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        except Exception:
            log.exception("health endpoint failed")
            with contextlib.suppress(Exception):
                await self._reply(writer, 500, "text/plain", b"error\n")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, status: int, ctype: str, body: bytes) -> None:
        reason = {
            200: "OK",
            404: "Not Found",
            500: "Internal Server Error",
            503: "Service Unavailable",
        }[status]
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        writer.write(head + body)
        await writer.drain()
