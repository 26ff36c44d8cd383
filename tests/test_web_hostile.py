"""Hostile requests to the console and the API: garbage query parameters, numbers too large
for the database, bad ids, NUL bytes, unknown actions. Each gets a 4xx with a one-line error,
never a 500, on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from tests.webconsole import TOKEN, Env, client_for, login, polled_env

pytestmark = pytest.mark.slow
HUGE = "9" * 30  # beyond a 64-bit integer
BIG = str(2**63)  # one past the largest 64-bit integer

GETS = [
    "/api/v1/alerts?limit=abc",
    f"/api/v1/alerts?limit={HUGE}",
    "/api/v1/alerts?limit=-5",
    f"/api/v1/alerts?before={HUGE}",
    f"/api/v1/alerts?before={BIG}",
    f"/api/v1/alerts?before=-{HUGE}",
    "/api/v1/alerts?before=1.5",
    "/api/v1/alerts?since=yesterday",
    "/api/v1/alerts?since=1e400",
    "/api/v1/alerts?since=nan",
    "/api/v1/alerts?until=-inf",
    f"/api/v1/alerts?since={HUGE}{HUGE}",
    "/api/v1/alerts?since=9999-12-31T23:59:59",
    "/api/v1/alerts?severity=catastrophic",
    "/api/v1/alerts?channel_status=%00",
    "/api/v1/alerts?rule=%00",
    "/api/v1/alerts?rule=" + "x" * 5000,
    "/api/v1/alerts?rule=%ff%fe",
    f"/api/v1/alerts/{HUGE}",
    f"/api/v1/alerts/{BIG}",
    "/api/v1/alerts/0",
    "/api/v1/alerts/abc",
    f"/api/v1/alerts/{HUGE}/feedback",
    f"/api/v1/stories/{HUGE}",
    "/api/v1/stories/0",
    "/api/v1/deliveries?status=bogus",
    f"/api/v1/deliveries?limit={HUGE}",
    "/api/v1/deliveries?status=%00",
    "/api/v1/nothing-here",
    f"/alerts?before={HUGE}",
    f"/alerts?before={BIG}",
    "/alerts?limit=x",
    "/alerts?since=garbage",
    "/alerts?since=1e400",
    "/alerts?rule=%00",
    "/alerts?severity=%00",
    f"/alerts/{HUGE}",
    f"/alerts/{BIG}",
    "/alerts/0",
    "/alerts/abc",
    "/deliveries?status=nope",
    f"/events?after={HUGE}",
    "/events?after=abc",
    "/login?next=%00",
    "/login?next=//evil.example",
]


def operator_posts(csrf: str) -> list[tuple[str, dict[str, str]]]:
    return [
        (f"/api/v1/feeds/{HUGE}/pause", {}),
        (f"/api/v1/feeds/{BIG}/poll", {}),
        ("/api/v1/feeds/1/explode", {}),
        (f"/api/v1/deliveries/{HUGE}/retry", {}),
        (f"/api/v1/deliveries/{BIG}/replay", {}),
        ("/api/v1/deliveries/1/explode", {}),
        (f"/api/v1/alerts/{HUGE}/feedback", {}),
        (f"/api/v1/alerts/{BIG}/feedback", {}),
        ("/api/v1/alerts/1/feedback", {"verdict": "relevant", "note": "a\x00b"}),
        ("/api/v1/match", {"text": "US troops \x00 rocket"}),
        ("/api/v1/match", {"text": "x", "query": "\x00"}),
    ]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("webhostile")
    if request.param == "sqlite":
        with polled_env(tmp) as e:
            yield e
        return
    server: str = request.getfixturevalue("postgres_server")
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    with polled_env(tmp, database=server.rsplit("/", 1)[0] + f"/{name}") as e:
        yield e


def check(res: object, what: str) -> None:
    status = res.status_code  # type: ignore[attr-defined]
    assert 400 <= status < 500 or status in (200, 303), (what, status, res.text[:300])  # type: ignore[attr-defined]
    assert status != 500


def test_garbage_gets_4xx_never_500(env: Env) -> None:
    c = client_for(env.console)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for path in GETS:
        if path.startswith("/events"):
            continue  # a stream: checked below
        res = c.get(path, headers=bearer, follow_redirects=False)
        check(res, path)
    # A huge id is a 404 (or 400), not an "int too large" from the database driver.
    for path in (f"/api/v1/alerts/{HUGE}", f"/api/v1/alerts/{BIG}", f"/api/v1/stories/{HUGE}"):
        assert c.get(path, headers=bearer).status_code in (400, 404), path
    assert c.get(f"/api/v1/alerts?before={HUGE}", headers=bearer).status_code == 400
    # The same queries answer well-formed requests on this database.
    feeds = c.get("/api/v1/feeds", headers=bearer).json()["feeds"]
    assert [f["entries_per_day"] for f in feeds] == [round(3 / 7, 2)]
    deliveries = c.get("/api/v1/deliveries", headers=bearer).json()["deliveries"]
    assert len(deliveries) == 2 and deliveries[0]["id"] > deliveries[1]["id"]
    assert {d["rule"] for d in deliveries} == {"us-troops"}
    assert c.get("/sources", headers=bearer).status_code == 200


def test_garbage_posts_and_forms_get_4xx(env: Env) -> None:
    c = client_for(env.console)
    csrf = login(c, "olga")
    headers = {"X-CSRF-Token": csrf, "Content-Type": "application/json"}
    for path, body in operator_posts(csrf):
        check(c.post(path, json=body, headers=headers), path)
    bad_bodies = [b"{", b"[]", b'"x"', b'{"verdict": 5}', b'{"verdict": "relevant", "note": 7}']
    for body in bad_bodies:
        check(c.post("/api/v1/alerts/1/feedback", content=body, headers=headers), body.decode())
        check(c.post("/api/v1/match", content=body, headers=headers), body.decode())
    forms = [
        (f"/alerts/{HUGE}/feedback", {"verdict": "relevant", "csrf": csrf}),
        ("/alerts/1/feedback", {"verdict": "bogus", "csrf": csrf}),
        (f"/sources/{HUGE}/pause", {"csrf": csrf}),
        (f"/deliveries/{HUGE}/retry", {"csrf": csrf}),
        ("/rules", {"text": "\x00", "query": "\x00(", "csrf": csrf}),
        ("/alerts/1/feedback", {"verdict": "relevant", "note": "a\x00b", "csrf": csrf}),
    ]
    for path, data in forms:
        check(c.post(path, data=data, follow_redirects=False), path)


def test_a_bad_event_cursor_is_refused(env: Env) -> None:
    c = client_for(env.console)
    login(c, "ravi")
    for after in (HUGE, "abc", "-1" + "0" * 25):
        res = c.get(f"/events?after={after}")
        assert res.status_code == 400, (after, res.status_code)
