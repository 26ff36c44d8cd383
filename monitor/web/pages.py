"""Server-rendered pages (Jinja2, autoescaped): every page is readable without JavaScript;
`static/console.js` only adds the live timeline (server-sent events from `/events`).

Forms post back to the page's own path with the session's CSRF token and redirect (303) to the
page they came from, so a reload never re-sends them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from monitor.web import api
from monitor.web.auth import (
    authenticate_password,
    csrf_ok,
    csrf_token,
    current_user,
    login_keys,
)

TEMPLATES = Path(__file__).parent / "templates"
env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"], default_for_string=True, default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters["iso"] = lambda ts: (api.iso(ts) or "-")[:19].replace("T", " ")
#: Seconds between the live timeline's looks at the store (works across nodes).
HEARTBEAT = 15.0


def render(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    console = api.console_of(request)
    user = current_user(request, console.web, console.tokens)
    html = env.get_template(name).render(
        request=request, user=user, csrf=csrf_token(request), path=request.url.path, **ctx
    )
    return HTMLResponse(html, status_code=status)


def error_page(request: Request, status: int, message: str) -> Response:
    return render(request, "error.html", status=status, status_code=status, message=message)


def back(request: Request, default: str) -> RedirectResponse:
    target = request.headers.get("referer", "")
    host = f"{request.url.scheme}://{request.url.netloc}/"
    path = "/" + target[len(host) :] if target.startswith(host) else default
    return RedirectResponse(path, status_code=303)


def highlight(text: str, spans: list[tuple[int, int]]) -> list[tuple[str, bool]]:
    """`text` cut into (piece, is_hit) segments for the hits' `[start, end)` spans."""
    out: list[tuple[str, bool]] = []
    pos = 0
    for start, end in sorted(spans):
        start, end = max(start, pos), min(end, len(text))
        if start >= end:
            continue
        if start > pos:
            out.append((text[pos:start], False))
        out.append((text[start:end], True))
        pos = end
    if pos < len(text):
        out.append((text[pos:], False))
    return out


def bars(values: list[int], width: int = 168, height: int = 40) -> list[dict[str, float]]:
    """Bar geometry of a small inline SVG chart (one bar per day)."""
    if not values:
        return []
    top = max(values) or 1
    step = width / len(values)
    return [
        {
            "x": round(i * step, 1),
            "w": round(step * 0.8, 1),
            "h": round(v / top * height, 1),
            "y": round(height - v / top * height, 1),
            "v": v,
        }
        for i, v in enumerate(values)
    ]


env.globals["bars"] = bars

# ---------------------------------------------------------------------- login


def safe_next(path: str) -> bool:
    """Whether a post-login target stays on this site (no `//host` or `/\\host`)."""
    return path.startswith("/") and not path.startswith(("//", "/\\")) and "\\" not in path


async def login(request: Request) -> Response:
    console = api.console_of(request)
    nxt = request.query_params.get("next", "/alerts")
    nxt = nxt if safe_next(nxt) else "/alerts"
    if request.method == "GET":
        return render(request, "login.html", next=nxt, error=None)
    if not await csrf_ok(request):
        return render(request, "login.html", 403, next=nxt, error="The form expired: try again.")
    form = await request.form()
    name, password = str(form.get("username", "")), str(form.get("password", ""))
    web = console.web
    keys = login_keys(web, name, request.client.host if request.client else None)
    window = web.login_window.total_seconds()
    refused = console.logins.blocked(keys, window)
    if refused is not None:
        minutes = max(1, round(refused[1] / 60))
        res = render(
            request,
            "login.html",
            429,
            next=nxt,
            error=f"Too many failed logins: try again in {minutes} min.",
        )
        res.headers["Retry-After"] = str(int(refused[1]) + 1)
        return res
    # Counted as failed before the (slow) check, so parallel guesses cannot pass the limit.
    console.logins.failed(list(keys))
    if not await asyncio.to_thread(authenticate_password, web, name, password):
        return render(request, "login.html", 401, next=nxt, error="Wrong user name or password.")
    console.logins.succeeded(list(keys))
    request.session.clear()
    request.session["user"] = name
    csrf_token(request)  # a new token for the new session
    return RedirectResponse(nxt, status_code=303)


async def logout(request: Request) -> Response:
    if await csrf_ok(request):
        request.session.clear()
    return RedirectResponse("/login", status_code=303)


async def index(request: Request) -> Response:
    return RedirectResponse("/alerts", status_code=303)


# ---------------------------------------------------------------------- alerts


async def alerts_page(request: Request) -> Response:
    console, _ = await api.guard(request)
    f = api.alert_filter(request.query_params)
    rows = await asyncio.to_thread(console.repo.alerts, f)
    params = {k: v for k, v in request.query_params.items() if k != "before" and v}
    older = (
        "/alerts?" + urlencode({**params, "before": rows[-1]["id"]})
        if len(rows) == f.limit
        else None
    )
    latest = max((r["id"] for r in rows), default=0)
    if f.before is not None:
        latest = 0  # an older page is not live
    return render(
        request,
        "alerts.html",
        alerts=rows,
        f=f,
        rules=[r.name for r in console.settings().active_rules],
        severities=api.SEVERITIES,
        statuses=("pending", "failed", "sent", "dead", "held"),
        older=older,
        latest=latest,
        live=f.before is None,
    )


def alert_view(alert: dict[str, Any]) -> dict[str, Any]:
    """Each article field cut into highlighted segments by the rule's hits."""
    spans: dict[str, list[tuple[int, int]]] = {}
    for hit in alert["hits"]:
        spans.setdefault(hit.get("field", ""), []).append((int(hit["start"]), int(hit["end"])))
    art = alert["article"]
    return {
        name: highlight(art[name] or "", spans.get(name, []))
        for name in ("title", "summary", "body")
    }


async def alert_page(request: Request) -> Response:
    console, _ = await api.guard(request)
    alert_id = api.path_id(request)
    alert = await asyncio.to_thread(console.repo.alert, alert_id)
    if alert is None:
        raise HTTPException(404, f"no alert {alert_id}")
    feedback = await asyncio.to_thread(console.store.feedback.for_alert, alert_id)
    why = await asyncio.to_thread(api.rule_explanation, console, alert)
    return render(
        request, "alert.html", alert=alert, fields=alert_view(alert), feedback=feedback, why=why
    )


async def alert_feedback(request: Request) -> Response:
    console, user = await api.guard(request, "operator")
    form = await request.form()
    verdict = str(form.get("verdict", ""))
    if verdict not in ("relevant", "irrelevant"):
        raise HTTPException(400, "verdict: relevant or irrelevant")
    note = str(form.get("note", "")) or None
    alert_id = api.path_id(request)
    await api.record_feedback(console, alert_id, verdict, note, user)
    return RedirectResponse(f"/alerts/{alert_id}", status_code=303)


async def events(request: Request) -> Response:
    """Server-sent events: each new alert (`event: alert`, JSON data) as the store gets it."""
    console, _ = await api.guard(request)
    after = api.parse_int(
        request.query_params.get("after") or request.headers.get("last-event-id"), "after"
    )
    if after is None:
        after = await asyncio.to_thread(console.repo.latest_alert_id)

    async def stream(last: int) -> AsyncIterator[str]:
        # One shared poller reads the store for every open stream (`monitor.web.live`).
        live = console.live
        queue = await live.subscribe()
        try:
            yield "retry: 2000\n\n"
            for row in await live.backlog(last, live.last):
                last = int(row["id"])
                yield f"id: {row['id']}\nevent: alert\ndata: {json.dumps(api.isoify(row))}\n\n"
            while not console.stopping.is_set():
                try:
                    got = await asyncio.wait_for(queue.get(), timeout=HEARTBEAT)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if got is None:  # the server stops, or this stream fell behind
                    return
                if int(got["id"]) > last:
                    last = int(got["id"])
                    yield f"id: {last}\nevent: alert\ndata: {json.dumps(api.isoify(got))}\n\n"
        finally:
            live.unsubscribe(queue)

    return StreamingResponse(
        stream(after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


# ---------------------------------------------------------------------- sources, deliveries


async def sources_page(request: Request) -> Response:
    console, _ = await api.guard(request)
    feeds = await asyncio.to_thread(api.feeds_view, console)
    return render(request, "sources.html", feeds=feeds, now=console.clock())


async def source_action(request: Request) -> Response:
    console, user = await api.guard(request, "operator")
    action = request.path_params["action"]
    if action not in api.FEED_ACTIONS:
        raise HTTPException(404, f"no feed action {action!r}")
    await api.feed_action(console, api.path_id(request), action, user)
    return back(request, "/sources")


async def deliveries_page(request: Request) -> Response:
    console, _ = await api.guard(request)
    statuses = api.delivery_statuses(request.query_params.get("status"))
    rows = await asyncio.to_thread(console.repo.deliveries, statuses, limit=200)
    return render(request, "deliveries.html", deliveries=rows, statuses=statuses)


async def deliveries_retry_dead(request: Request) -> Response:
    console, _ = await api.guard(request, "operator")
    await api.retry_dead(console)
    return back(request, "/deliveries")


async def delivery_action(request: Request) -> Response:
    console, _ = await api.guard(request, "operator")
    action = request.path_params["action"]
    if action not in api.DELIVERY_ACTIONS:
        raise HTTPException(404, f"no delivery action {action!r}")
    await api.delivery_action(console, api.path_id(request), action)
    return back(request, "/deliveries")


# ---------------------------------------------------------------------- rules


async def rules_page(request: Request) -> Response:
    console, _ = await api.guard(request)
    test: dict[str, Any] | None = None
    error: str | None = None
    form: dict[str, str] = {}
    if request.method == "POST":
        data = await request.form()
        form = {k: str(data.get(k, "")) for k in ("text", "url", "query")}
        try:
            test = await api.run_match(console, {k: v for k, v in form.items() if v})
        except HTTPException as exc:
            error = str(exc.detail)
    rules = await asyncio.to_thread(api.rules_view, console)
    return render(request, "rules.html", rules=rules, test=test, error=error, form=form)


ROUTES = [
    Route("/", index),
    Route("/login", login, methods=["GET", "POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/alerts", alerts_page),
    Route("/alerts/{id:int}", alert_page),
    Route("/alerts/{id:int}/feedback", alert_feedback, methods=["POST"]),
    Route("/events", events),
    Route("/sources", sources_page),
    Route("/sources/{id:int}/{action:str}", source_action, methods=["POST"]),
    Route("/deliveries", deliveries_page),
    Route("/deliveries/retry-dead", deliveries_retry_dead, methods=["POST"]),
    Route("/deliveries/{id:int}/{action:str}", delivery_action, methods=["POST"]),
    Route("/rules", rules_page, methods=["GET", "POST"]),
]
