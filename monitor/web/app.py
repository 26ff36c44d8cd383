"""The Starlette application: health endpoints, login, the JSON API and the pages."""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from monitor import health
from monitor.web import api, pages
from monitor.web.auth import probe_allowed
from monitor.web.context import Console

log = logging.getLogger("monitor.web")
STATIC = Path(__file__).parent / "static"


Endpoint = Callable[[Request], Awaitable[Response]]


def probe(endpoint: Endpoint, kind: str) -> Endpoint:
    """`endpoint` answered only when `probe_allowed` (else 401, JSON)."""

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        console: Console = request.app.state.console
        if not probe_allowed(request, console.web, kind, console.tokens):
            return JSONResponse(
                {"error": f"{request.url.path} needs a login, the metrics token, or loopback"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return await endpoint(request)

    return guarded


def routes() -> list[BaseRoute]:
    return [
        Route("/healthz", probe(health.healthz, "health")),
        Route("/readyz", probe(health.readyz, "health")),
        Route("/metrics", probe(health.metrics, "metrics")),
        Mount("/api/v1", routes=api.ROUTES),
        *pages.ROUTES,
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/") or exc.status_code not in (401, 403, 404):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)
    if exc.status_code == 401 and request.method == "GET":
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    return pages.error_page(request, exc.status_code, str(exc.detail))


async def _crash(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    return JSONResponse({"error": "internal error (see the daemon's log)"}, status_code=500)


def create_app(console: Console) -> Starlette:
    web = console.web
    key = web.secret_key.get_secret_value() if web.secret_key else secrets.token_urlsafe(32)
    app = Starlette(
        routes=routes(),
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=key,
                session_cookie="monitor_session",
                max_age=int(web.session_max_age.total_seconds()),
                same_site="strict",
                https_only=web.cookie_secure,
            )
        ],
        exception_handlers={HTTPException: _http_error, Exception: _crash},
    )
    app.state.console = console
    return app
