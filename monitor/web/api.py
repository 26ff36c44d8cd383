"""The JSON API under `/api/v1`, and its OpenAPI document (`OPENAPI`, kept next to the routes:
a test checks that every route is described).

Times are ISO 8601 UTC strings in answers; query parameters `since` / `until` take ISO 8601 or
UNIX seconds. Paging is by cursor: `next` in an answer is the `before` of the next page.
Reads need the `read` role; changes need `operator` (and, with a session cookie, the CSRF
token in `X-CSRF-Token`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from monitor.errors import MonitorError, UnknownAlert
from monitor.rules import RuleCompileError, RuleSet, RuleSpec, compile_rules
from monitor.rules.examples import example_fields
from monitor.store.console import OPEN_STATUSES, AlertFilter
from monitor.store.outbox import STATUSES
from monitor.web.auth import User, require

if TYPE_CHECKING:
    from monitor.web.context import Console

MAX_PAGE = 500
MAX_TEXT = 1_000_000
SEVERITIES = ("low", "medium", "high", "critical")
FEED_ACTIONS = ("pause", "resume", "poll")
DELIVERY_ACTIONS = ("retry", "replay")


def console_of(request: Request) -> Console:
    return request.app.state.console  # type: ignore[no-any-return]


async def guard(request: Request, role: str = "read") -> tuple[Console, User]:
    console = console_of(request)
    return console, await require(request, console.web, role, console.tokens)


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def isoify(obj: Any) -> Any:
    """Every `*_at` and `published` value (UNIX seconds) as ISO 8601, recursively."""
    if isinstance(obj, dict):
        return {
            k: iso(v)
            if (k.endswith("_at") or k == "published") and isinstance(v, int | float)
            else isoify(v)
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [isoify(v) for v in obj]
    return obj


def parse_time(value: str | None, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(
            400, f"{name}: not a time (ISO 8601 or UNIX seconds): {value!r}"
        ) from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


#: The database's integers are 64-bit: a larger one would be the driver's error (a 500).
MAX_INT = 2**63 - 1


def parse_int(value: str | None, name: str, *, default: int | None = None) -> int | None:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise HTTPException(400, f"{name}: not an integer: {value[:100]!r}") from None
    if not -MAX_INT <= number <= MAX_INT:
        raise HTTPException(400, f"{name}: out of range: {value[:100]!r}")
    return number


def no_nul(value: str | None, name: str) -> str | None:
    """`value`, refused (400) when it holds a NUL character: PostgreSQL cannot store or
    compare one, so SQLite and PostgreSQL answer alike."""
    if value is not None and "\x00" in value:
        raise HTTPException(400, f"{name}: contains a NUL character")
    return value


def alert_filter(params: Any) -> AlertFilter:
    """The timeline's filters from query parameters (400 for a bad one)."""
    severity = params.get("severity") or None
    if severity is not None and severity not in SEVERITIES:
        raise HTTPException(400, f"severity: one of {', '.join(SEVERITIES)}")
    status = params.get("channel_status") or None
    if status is not None and status not in STATUSES:
        raise HTTPException(400, f"channel_status: one of {', '.join(STATUSES)}")
    limit = parse_int(params.get("limit"), "limit", default=50) or 50
    return AlertFilter(
        rule=no_nul(params.get("rule"), "rule") or None,
        severity=severity,
        channel_status=status,
        since=parse_time(params.get("since"), "since"),
        until=parse_time(params.get("until"), "until"),
        before=parse_int(params.get("before"), "before"),
        limit=max(1, min(limit, MAX_PAGE)),
    )


def ok(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(isoify(data), status_code=status)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_TEXT:
        raise HTTPException(413, f"request body over {MAX_TEXT} bytes")
    try:
        data = json.loads(raw or b"{}")
    except ValueError as exc:
        raise HTTPException(400, f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise HTTPException(400, "the body must be a JSON object")
    return data


def path_id(request: Request, name: str = "id") -> int:
    """The route's `{id:int}`; one too large for the database names nothing (404)."""
    number = int(request.path_params[name])
    if number > MAX_INT:
        raise HTTPException(404, f"no such id: {number}")
    return number


# ---------------------------------------------------------------------- alerts and stories


async def list_alerts(request: Request) -> Response:
    console, _ = await guard(request)
    f = alert_filter(request.query_params)
    rows = await asyncio.to_thread(console.repo.alerts, f)
    nxt = rows[-1]["id"] if len(rows) == f.limit else None
    return ok({"alerts": rows, "next": nxt})


async def get_alert(request: Request) -> Response:
    console, _ = await guard(request)
    alert = await asyncio.to_thread(console.repo.alert, path_id(request))
    if alert is None:
        raise HTTPException(404, f"no alert {request.path_params['id']}")
    alert["why"] = await asyncio.to_thread(rule_explanation, console, alert)
    fb = await asyncio.to_thread(console.store.feedback.for_alert, alert["id"])
    alert["feedback"] = [
        {"verdict": x.verdict, "note": x.note, "author": x.author, "created_at": x.created_at}
        for x in fb
    ]
    return ok(alert)


def rule_explanation(console: Console, alert: dict[str, Any]) -> str | None:
    """The rule's explanation of its verdict on the alert's article, by the running rules
    (None when the rule is no longer configured)."""
    ruleset = console.ruleset()
    if alert["rule"] not in ruleset.rule_names:
        return None
    art = alert["article"]
    fields = {
        "title": art["title"] or "",
        "summary": art["summary"] or "",
        "body": art["body"] or "",
        "author": "\n".join(art["authors"]),
        "tags": "",
        "url": art["url"] or "",
        "feed": art["feed"] or "",
    }
    return ruleset.explain(fields, alert["rule"])


async def get_story(request: Request) -> Response:
    console, _ = await guard(request)
    from monitor.store import schema as s
    from monitor.store.engine import read_tx

    story_id = path_id(request)

    def load() -> dict[str, Any] | None:
        with read_tx(console.store.engine) as conn:
            if conn.execute(s.stories.select().where(s.stories.c.id == story_id)).first() is None:
                return None
            return console.repo._story(conn, story_id)

    story = await asyncio.to_thread(load)
    if story is None:
        raise HTTPException(404, f"no story {story_id}")
    return ok(story)


async def add_feedback(request: Request) -> Response:
    console, user = await guard(request, "operator")
    data = await _body(request)
    verdict = data.get("verdict")
    note = data.get("note")
    if verdict not in ("relevant", "irrelevant"):
        raise HTTPException(400, "verdict: 'relevant' or 'irrelevant'")
    if note is not None and not isinstance(note, str):
        raise HTTPException(400, "note: a string")
    fid = await record_feedback(console, path_id(request), verdict, note, user)
    return ok({"id": fid, "verdict": verdict}, 201)


async def record_feedback(
    console: Console, alert_id: int, verdict: str, note: str | None, user: User
) -> int:
    no_nul(note, "note")
    try:
        return await asyncio.to_thread(
            console.store.feedback.add, alert_id, verdict, note=note, author=user.name
        )
    except UnknownAlert:
        raise HTTPException(404, f"no alert {alert_id}") from None


async def list_feedback(request: Request) -> Response:
    console, _ = await guard(request)
    rows = await asyncio.to_thread(console.store.feedback.for_alert, path_id(request))
    return ok(
        {
            "feedback": [
                {
                    "verdict": x.verdict,
                    "note": x.note,
                    "author": x.author,
                    "created_at": x.created_at,
                }
                for x in rows
            ]
        }
    )


# ---------------------------------------------------------------------- feeds


def feeds_view(console: Console) -> list[dict[str, Any]]:
    """The feeds with their 304 ratio from the store (`feeds.not_modified / feeds.polls`,
    counted by every node's polls), so every node shows the same figures."""
    return console.repo.feeds(console.clock())


async def list_feeds(request: Request) -> Response:
    console, _ = await guard(request)
    return ok({"feeds": await asyncio.to_thread(feeds_view, console)})


async def feed_action(console: Console, feed_id: int, action: str, user: User) -> None:
    now = console.clock()
    repo = console.repo
    if action == "poll":
        found = await asyncio.to_thread(repo.poll_feed_now, feed_id, now)
    else:
        found = await asyncio.to_thread(
            repo.set_paused, feed_id, action == "pause", by=user.name, now=now
        )
    if not found:
        raise HTTPException(404, f"no feed {feed_id}")


async def post_feed_action(request: Request) -> Response:
    console, user = await guard(request, "operator")
    action = request.path_params["action"]
    if action not in FEED_ACTIONS:
        raise HTTPException(404, f"no feed action {action!r} ({', '.join(FEED_ACTIONS)})")
    await feed_action(console, path_id(request), action, user)
    return ok({"id": path_id(request), "done": action})


# ---------------------------------------------------------------------- deliveries


def delivery_statuses(value: str | None) -> tuple[str, ...]:
    if not value:
        return OPEN_STATUSES
    wanted = tuple(v for v in value.split(",") if v)
    bad = [v for v in wanted if v not in STATUSES]
    if bad:
        raise HTTPException(400, f"status: {bad[0]!r} is not one of {', '.join(STATUSES)}")
    return wanted


async def list_deliveries(request: Request) -> Response:
    console, _ = await guard(request)
    statuses = delivery_statuses(request.query_params.get("status"))
    limit = parse_int(request.query_params.get("limit"), "limit", default=100) or 100
    rows = await asyncio.to_thread(
        console.repo.deliveries, statuses, limit=max(1, min(limit, MAX_PAGE))
    )
    return ok({"deliveries": rows})


async def delivery_action(console: Console, delivery_id: int, action: str) -> dict[str, Any]:
    now = console.clock()
    if action == "retry":
        n = await asyncio.to_thread(console.store.outbox.retry, [delivery_id], now=now)
        if not n:
            raise HTTPException(409, f"delivery {delivery_id} is not failed or dead (or unknown)")
        return {"id": delivery_id, "done": "retry"}
    new = await asyncio.to_thread(console.repo.replay, delivery_id, now)
    if new is None:
        raise HTTPException(409, f"delivery {delivery_id} is not sent or dead (or unknown)")
    return {"id": delivery_id, "done": "replay", "new_delivery": new}


async def retry_dead(console: Console) -> int:
    """Every dead delivery due again now; how many."""
    return await asyncio.to_thread(console.store.outbox.retry, None, dead=True, now=console.clock())


async def post_retry_dead(request: Request) -> Response:
    console, _ = await guard(request, "operator")
    return ok({"retried": await retry_dead(console)})


async def post_delivery_action(request: Request) -> Response:
    console, _ = await guard(request, "operator")
    action = request.path_params["action"]
    if action not in DELIVERY_ACTIONS:
        raise HTTPException(404, f"no delivery action {action!r} ({', '.join(DELIVERY_ACTIONS)})")
    return ok(await delivery_action(console, path_id(request), action))


# ---------------------------------------------------------------------- rules and matching


def rules_view(console: Console) -> list[dict[str, Any]]:
    settings = console.settings()
    ruleset = console.ruleset()
    days = console.repo.rule_days([r.name for r in settings.active_rules], console.clock())
    labelled = console.store.feedback.labelled()
    out = []
    for rule in settings.active_rules:
        examples = [
            {
                "expected": kind,
                "fields": example_fields(ex),
                "passes": (ruleset.match_rule(example_fields(ex), rule.name) is not None)
                == (kind == "match"),
            }
            for kind in ("match", "no_match")
            for ex in getattr(rule.examples, kind)
        ]
        labels = [x for x in labelled if x.rule == rule.name]
        relevant = sum(1 for x in labels if x.relevant)
        out.append(
            {
                "name": rule.name,
                "query": rule.query,
                "severity": rule.severity,
                "examples": examples,
                "per_day": days[rule.name],
                "labels": {
                    "labelled": len(labels),
                    "relevant": relevant,
                    "precision": round(relevant / len(labels), 3) if labels else None,
                },
            }
        )
    return out


async def list_rules(request: Request) -> Response:
    console, _ = await guard(request)
    return ok({"rules": await asyncio.to_thread(rules_view, console)})


def match_fields(data: dict[str, Any]) -> dict[str, str]:
    fields = {k: data.get(k) or "" for k in ("title", "summary", "body")}
    if data.get("text"):
        fields["body"] = str(data["text"])
    for k, v in fields.items():
        if not isinstance(v, str):
            raise HTTPException(400, f"{k}: a string")
    if not any(fields.values()):
        raise HTTPException(400, "give `text` (or title/summary/body) or `url`")
    return fields


def explain_all(ruleset: RuleSet, fields: dict[str, str], names: list[str]) -> list[dict[str, Any]]:
    matched = {m.rule: m for m in ruleset.match(fields)}
    out = []
    for name in names:
        m = matched.get(name)
        out.append(
            {
                "rule": name,
                "matched": m is not None,
                "hits": [
                    {
                        "field": h.field,
                        "start": h.start,
                        "end": h.end,
                        "leaf": h.leaf,
                        "text": fields[h.field][h.start : h.end],
                    }
                    for h in (m.hits if m else [])
                ],
                "explanation": ruleset.explain(fields, name),
            }
        )
    return out


async def run_match(console: Console, data: dict[str, Any]) -> dict[str, Any]:
    """A text, URL or draft query -> which rules match and why (`POST /api/v1/match`)."""
    url = data.get("url")
    if url:
        if not isinstance(url, str) or console.fetch_page is None:
            raise HTTPException(400, "url: a string")
        try:
            fields = await console.fetch_page(url)
        except (MonitorError, ValueError) as exc:
            raise HTTPException(422, f"{url}: {exc}") from None
    else:
        fields = match_fields(data)
    fields = {k: v[:MAX_TEXT] for k, v in fields.items()}
    query = data.get("query")
    if query:
        if not isinstance(query, str):
            raise HTTPException(400, "query: a string")
        try:
            ruleset = compile_rules([RuleSpec("draft", query)], console.settings().entities)
        except RuleCompileError as exc:
            raise HTTPException(422, "; ".join(e.message for e in exc.errors)) from None
        names = ["draft"]
    else:
        ruleset = console.ruleset()
        names = ruleset.rule_names
        if data.get("rule"):
            names = [n for n in names if n == data["rule"]]
    # A slow (regex) rule must not stall the event loop.
    results = await asyncio.to_thread(explain_all, ruleset, fields, names)
    return {"fields": fields, "results": results}


async def post_match(request: Request) -> Response:
    console, _ = await guard(request)
    return ok(await run_match(console, await _body(request)))


async def openapi(request: Request) -> Response:
    return JSONResponse(OPENAPI)


ROUTES = [
    Route("/alerts", list_alerts, methods=["GET"]),
    Route("/alerts/{id:int}", get_alert, methods=["GET"]),
    Route("/alerts/{id:int}/feedback", list_feedback, methods=["GET"]),
    Route("/alerts/{id:int}/feedback", add_feedback, methods=["POST"]),
    Route("/stories/{id:int}", get_story, methods=["GET"]),
    Route("/feeds", list_feeds, methods=["GET"]),
    Route("/feeds/{id:int}/{action:str}", post_feed_action, methods=["POST"]),
    Route("/deliveries", list_deliveries, methods=["GET"]),
    Route("/deliveries/retry-dead", post_retry_dead, methods=["POST"]),
    Route("/deliveries/{id:int}/{action:str}", post_delivery_action, methods=["POST"]),
    Route("/rules", list_rules, methods=["GET"]),
    Route("/match", post_match, methods=["POST"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]


def _op(
    summary: str, *, params: Sequence[str] = (), body: bool = False, role: str = "read"
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "description": f"Needs the `{role}` role.",
        "parameters": [
            {
                "name": p,
                "in": "path" if p in ("id", "action") else "query",
                "required": p in ("id", "action"),
                "schema": {"type": "integer" if p in ("id", "before", "limit") else "string"},
            }
            for p in params
        ],
        "responses": {"200": {"description": "OK", "content": {"application/json": {}}}},
    }
    if body:
        op["requestBody"] = {"content": {"application/json": {"schema": {"type": "object"}}}}
    return op


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "News monitor API", "version": "1"},
    "servers": [{"url": "/api/v1"}],
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "session": {"type": "apiKey", "in": "cookie", "name": "monitor_session"},
        }
    },
    "security": [{"bearer": []}, {"session": []}],
    "paths": {
        "/alerts": {
            "get": _op(
                "Alerts, newest first",
                params=["rule", "severity", "channel_status", "since", "until", "before", "limit"],
            )
        },
        "/alerts/{id}": {"get": _op("One alert: article, hits, story, deliveries", params=["id"])},
        "/alerts/{id}/feedback": {
            "get": _op("Feedback recorded for an alert", params=["id"]),
            "post": _op("Record relevant / irrelevant", params=["id"], body=True, role="operator"),
        },
        "/stories/{id}": {"get": _op("A story and its sources", params=["id"])},
        "/feeds": {"get": _op("Feeds with health, polls and entry rates")},
        "/feeds/{id}/{action}": {
            "post": _op(
                "pause, resume or poll a feed now", params=["id", "action"], role="operator"
            )
        },
        "/deliveries": {
            "get": _op(
                "Deliveries by status (default pending,failed,dead)", params=["status", "limit"]
            )
        },
        "/deliveries/retry-dead": {
            "post": _op("Make every dead delivery due again", role="operator")
        },
        "/deliveries/{id}/{action}": {
            "post": _op(
                "retry (failed/dead) or replay (sent/dead)",
                params=["id", "action"],
                role="operator",
            )
        },
        "/rules": {"get": _op("Rules with query, examples, matches per day, labels")},
        "/match": {"post": _op("Match text, a URL or a draft query; explain", body=True)},
        "/openapi.json": {"get": _op("This document")},
    },
}
