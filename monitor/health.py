"""`/healthz`, `/readyz` and `/metrics`: the endpoints a supervisor and Prometheus poll.

They are routes of the console's Starlette app (`monitor.web`), served by uvicorn in the
daemon's event loop; this replaced a hand-written listener on asyncio streams. None needs a
login. `/healthz` is liveness: 200 while the scheduler ticks, 503 when it has stalled, with the
same JSON as before (feeds by health, the outbox, the daemon's counters) and the store's
condition (`store`: writable, read-only, full, locked or unreachable; see
`monitor.store.health`). A store that is not writable, or cannot be read, is a 503 with
`status: unhealthy` and the `reason` in one line, never a 500. `/readyz` is readiness: 200
when the database answers, the store is writable and the worker processes are up, else 503
naming what is not. `/metrics` is `prometheus_client`'s exposition of the daemon's own registry
(`monitor.metrics`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from monitor.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from monitor.web.context import Console

log = logging.getLogger("monitor.health")

#: Seconds a readiness check may take before it counts as failed.
READY_TIMEOUT = 5.0


async def _snapshot(console: Console) -> tuple[dict[str, Any], str | None]:
    """The daemon's snapshot with the store's condition (`store`), and what is wrong, if
    anything. A store that cannot be read is a 503 with its reason, never an error page."""
    health = console.store.health
    problem = None
    try:
        snap = await console.snapshot()
    except Exception as exc:
        if health.failed(exc) is None:  # not a store condition: a bug, but still no 500
            log.exception("the health snapshot failed")
            problem = f"the health snapshot failed: {type(exc).__name__}"
        snap = {}
    snap["store"] = health.to_dict()
    if not health.ok:
        problem = "database " + health.current.reason(health.database)
    return snap, problem


async def healthz(request: Request) -> Response:
    console: Console = request.app.state.console
    snap, problem = await _snapshot(console)
    if problem is not None:
        return JSONResponse({"status": "unhealthy", "reason": problem, **snap}, status_code=503)
    ok = snap.get("last_tick_age", 0.0) <= console.stalled_after
    return JSONResponse(
        {"status": "ok" if ok else "stalled", **snap}, status_code=200 if ok else 503
    )


def _database_ok(console: Console) -> None:
    with console.store.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


async def readiness(console: Console) -> dict[str, Any]:
    """Each check's result: True, or the reason it failed."""
    checks: dict[str, Any] = {}
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await asyncio.to_thread(_database_ok, console)
        checks["database"] = True
    except TimeoutError:
        checks["database"] = f"no answer in {READY_TIMEOUT:g} s"
    except Exception as exc:  # any driver error: the database is not reachable
        checks["database"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    health = console.store.health
    checks["store"] = True if health.ok else health.current.reason(health.database)
    checks["workers"] = True if console.workers_up() else "the worker pool is not running"
    checks["scheduler"] = True if not console.stopping.is_set() else "stopping"
    return checks


async def readyz(request: Request) -> Response:
    console: Console = request.app.state.console
    checks = await readiness(console)
    ready = all(v is True for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )


async def metrics(request: Request) -> Response:
    console: Console = request.app.state.console
    console.metrics.update((await _snapshot(console))[0])
    return Response(console.metrics.render(), media_type=CONTENT_TYPE)
