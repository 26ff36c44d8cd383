"""The console's JSON API and pages through Starlette's TestClient, on a store filled by a
real poll of a loopback feed (alerts, stories, deliveries that failed against a closed port)."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import threading
import time
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from monitor.store import schema as s
from monitor.store.engine import write_tx
from monitor.web import api
from monitor.web.app import routes
from tests.webconsole import HOSTILE, TOKEN, Env, client_for, login, polled_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with polled_env(tmp_path_factory.mktemp("web")) as e:
        yield e


@pytest.fixture
def operator(env: Env) -> Iterator[tuple[TestClient, str]]:
    with client_for(env.console) as c:
        yield c, login(c, "olga")


@pytest.fixture
def reader(env: Env) -> Iterator[tuple[TestClient, str]]:
    with client_for(env.console) as c:
        yield c, login(c, "ravi")


def bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def test_alerts_list_filters_and_pages(operator: tuple[TestClient, str]) -> None:
    c, _ = operator
    rows = c.get("/api/v1/alerts").json()["alerts"]
    assert [r["title"].split()[0] for r in rows] == ["Drone", "Rocket"]
    assert all(r["rule"] == "us-troops" and r["severity"] == "high" for r in rows)
    assert rows[0]["deliveries"] == {"failed": 1}
    assert rows[0]["created_at"].endswith("+00:00")  # ISO 8601 UTC
    page1 = c.get("/api/v1/alerts", params={"limit": 1}).json()
    assert len(page1["alerts"]) == 1 and page1["next"] == rows[0]["id"]
    page2 = c.get("/api/v1/alerts", params={"limit": 1, "before": page1["next"]}).json()
    assert [a["id"] for a in page2["alerts"]] == [rows[1]["id"]]
    assert c.get("/api/v1/alerts", params={"rule": "nope"}).json()["alerts"] == []
    assert c.get("/api/v1/alerts", params={"severity": "low"}).json()["alerts"] == []
    assert len(c.get("/api/v1/alerts", params={"channel_status": "failed"}).json()["alerts"]) == 2
    assert c.get("/api/v1/alerts", params={"channel_status": "sent"}).json()["alerts"] == []
    future = time.time() + 3600
    assert c.get("/api/v1/alerts", params={"since": future}).json()["alerts"] == []
    assert (
        len(c.get("/api/v1/alerts", params={"until": "2100-01-01T00:00:00Z"}).json()["alerts"]) == 2
    )
    bad = c.get("/api/v1/alerts", params={"since": "yesterday"})
    assert bad.status_code == 400 and "since" in bad.json()["error"]


def test_one_alert_has_article_hits_story_and_deliveries(operator: tuple[TestClient, str]) -> None:
    c, _ = operator
    first = c.get("/api/v1/alerts").json()["alerts"][0]
    a = c.get(f"/api/v1/alerts/{first['id']}").json()
    assert a["article"]["title"].startswith("Drone strike on US troops")
    hits = {(h["field"], h["text"]) for h in a["hits"]}
    assert ("title", "US troops") in hits and ("title", "Drone") in hits
    assert "us-troops" in a["why"] and "US troops" in a["why"]  # the rule's explanation
    assert [src["feed"] for src in a["story"]["sources"]] == ["Loopback News"]
    assert a["story"]["sources"][0]["why"] == "first article of the story"
    (d,) = a["deliveries"]
    assert d["channel"] == "hook" and d["status"] == "failed" and d["attempts"] == 1
    assert d["last_error"]
    story = c.get(f"/api/v1/stories/{a['story']['id']}").json()
    assert story["sources"] == a["story"]["sources"]
    assert c.get("/api/v1/alerts/99999").status_code == 404
    assert c.get("/api/v1/stories/99999").status_code == 404


def test_feeds_pause_resume_poll_now_in_the_store(
    env: Env, operator: tuple[TestClient, str]
) -> None:
    c, csrf = operator
    (feed,) = c.get("/api/v1/feeds").json()["feeds"]
    assert feed["health"] == "ok" and feed["name"] == "Loopback News"
    assert feed["entries_per_day"] == pytest.approx(3 / 7, abs=0.01)
    h = {"X-CSRF-Token": csrf}
    assert c.post(f"/api/v1/feeds/{feed['id']}/pause", headers=h).status_code == 200
    now = time.time()
    store = env.rt.store
    with write_tx(store.engine) as conn:  # due, but paused: no node may lease it
        conn.execute(s.feeds.update().values(next_poll_at=0.0))
    assert store.feeds.lease_due("other-node", limit=10, lease=60, now=now) == []
    (paused,) = c.get("/api/v1/feeds").json()["feeds"]
    assert paused["health"] == "paused" and paused["paused_by"] == "olga"
    assert c.post(f"/api/v1/feeds/{feed['id']}/resume", headers=h).status_code == 200
    with write_tx(store.engine) as conn:
        conn.execute(s.feeds.update().values(next_poll_at=now + 3600))
    assert store.feeds.lease_due("other-node", limit=10, lease=60, now=now) == []
    assert c.post(f"/api/v1/feeds/{feed['id']}/poll", headers=h).status_code == 200
    leased = store.feeds.lease_due("other-node", limit=10, lease=60, now=time.time() + 1)
    assert [f.id for f in leased] == [feed["id"]]
    store.feeds.release(leased[0], "other-node")
    assert c.post("/api/v1/feeds/999/pause", headers=h).status_code == 404
    assert c.post(f"/api/v1/feeds/{feed['id']}/explode", headers=h).status_code == 404


def test_deliveries_retry_and_replay(env: Env, operator: tuple[TestClient, str]) -> None:
    c, csrf = operator
    h = {"X-CSRF-Token": csrf}
    rows = c.get("/api/v1/deliveries").json()["deliveries"]
    assert {d["status"] for d in rows} == {"failed"} and len(rows) == 2
    target = rows[0]["id"]
    with write_tx(env.rt.store.engine) as conn:
        conn.execute(s.deliveries.update().where(s.deliveries.c.id == target).values(status="dead"))
    assert [
        d["id"] for d in c.get("/api/v1/deliveries", params={"status": "dead"}).json()["deliveries"]
    ] == [target]
    replay = c.post(f"/api/v1/deliveries/{target}/replay", headers=h).json()
    assert replay["new_delivery"] > target
    new = env.console.repo.delivery(replay["new_delivery"])
    assert new is not None and new["status"] == "pending" and new["channel"] == "hook"
    assert c.post(f"/api/v1/deliveries/{target}/retry", headers=h).status_code == 200
    assert env.console.repo.delivery(target)["status"] == "pending"  # type: ignore[index]
    again = c.post(f"/api/v1/deliveries/{target}/retry", headers=h)
    assert again.status_code == 409 and "not failed or dead" in again.json()["error"]
    assert c.get("/api/v1/deliveries", params={"status": "bogus"}).status_code == 400
    with write_tx(env.rt.store.engine) as conn:
        conn.execute(s.deliveries.update().values(status="dead"))
    assert 'id="retry-dead"' in c.get("/deliveries").text
    assert c.post("/api/v1/deliveries/retry-dead", headers=h).json()["retried"] >= 3
    assert c.get("/api/v1/deliveries", params={"status": "dead"}).json()["deliveries"] == []
    assert c.post("/api/v1/deliveries/retry-dead", headers=h).json()["retried"] == 0


def test_rules_examples_and_matches_per_day(operator: tuple[TestClient, str]) -> None:
    c, _ = operator
    (rule,) = c.get("/api/v1/rules").json()["rules"]
    assert rule["name"] == "us-troops" and "US troops" in rule["query"]
    assert [e["passes"] for e in rule["examples"]] == [True, True]
    assert rule["per_day"]["matches"][-1] == 2 and rule["per_day"]["alerts"][-1] == 2
    assert len(rule["per_day"]["matches"]) == 14


def test_match_text_draft_query_and_refused_url(operator: tuple[TestClient, str]) -> None:
    c, csrf = operator
    h = {"X-CSRF-Token": csrf}
    res = c.post("/api/v1/match", json={"text": "A rocket hit US troops."}, headers=h).json()
    (r,) = res["results"]
    assert r["rule"] == "us-troops" and r["matched"]
    assert {x["text"] for x in r["hits"]} == {"rocket", "US troops"}
    draft = c.post(
        "/api/v1/match",
        json={"text": "Ships in the harbour", "query": "harbour AND NOT ships"},
        headers=h,
    ).json()["results"][0]
    assert draft["rule"] == "draft" and not draft["matched"] and draft["explanation"]
    broken = c.post("/api/v1/match", json={"text": "x", "query": "(a OR"}, headers=h)
    assert broken.status_code == 422
    # The tester fetches with the feed fetcher's guard on: loopback is refused, clearly.
    url = c.post("/api/v1/match", json={"url": "http://127.0.0.1:9/x"}, headers=h)
    assert url.status_code == 422 and "127.0.0.1" in url.json()["error"]
    assert c.post("/api/v1/match", json={}, headers=h).status_code == 400
    assert c.post("/api/v1/match", content=b"[1]", headers=h).status_code == 400


def test_feedback_recorded_and_shown(env: Env, operator: tuple[TestClient, str]) -> None:
    c, csrf = operator
    alert = c.get("/api/v1/alerts").json()["alerts"][-1]["id"]
    h = {"X-CSRF-Token": csrf}
    res = c.post(
        f"/api/v1/alerts/{alert}/feedback",
        json={"verdict": "irrelevant", "note": "old news"},
        headers=h,
    )
    assert res.status_code == 201
    (fb,) = c.get(f"/api/v1/alerts/{alert}/feedback").json()["feedback"]
    assert fb["verdict"] == "irrelevant" and fb["author"] == "olga" and fb["note"] == "old news"
    assert (
        c.post(f"/api/v1/alerts/{alert}/feedback", json={"verdict": "meh"}, headers=h).status_code
        == 400
    )
    assert (
        c.post("/api/v1/alerts/9999/feedback", json={"verdict": "relevant"}, headers=h).status_code
        == 404
    )
    labelled = env.rt.store.feedback.labelled("us-troops")
    assert [x.alert_id for x in labelled] == [alert]
    (rule,) = c.get("/api/v1/rules").json()["rules"]
    assert rule["labels"] == {"labelled": 1, "relevant": 0, "precision": 0.0}


def test_token_reads_but_read_role_cannot_change(operator: tuple[TestClient, str]) -> None:
    c, _ = operator
    anon = TestClient(c.app, base_url="http://127.0.0.1")
    assert anon.get("/api/v1/alerts", headers=bearer()).status_code == 200
    assert anon.get("/api/v1/alerts", headers={"Authorization": "Bearer wrong"}).status_code == 401
    refused = anon.post("/api/v1/feeds/1/pause", headers=bearer())
    assert refused.status_code == 403 and "read" in refused.json()["error"]


def test_openapi_describes_every_api_route() -> None:
    (mount,) = [r for r in routes() if isinstance(r, Mount) and r.path == "/api/v1"]
    documented = {
        (path.replace("{id}", "{id:int}").replace("{action}", "{action:str}"), method.upper())
        for path, ops in api.OPENAPI["paths"].items()
        for method in ops
    }
    for route in mount.routes:
        assert isinstance(route, Route)
        for method in route.methods or ():
            if method == "HEAD":
                continue
            assert (route.path, method) in documented, f"{method} {route.path} not in OpenAPI"
    assert len(documented) == sum(len((r.methods or set()) - {"HEAD"}) for r in mount.routes)  # type: ignore[attr-defined]


def test_openapi_served(operator: tuple[TestClient, str]) -> None:
    doc = operator[0].get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.") and "/alerts" in doc["paths"]


def test_metrics_parse_with_prometheus_client(operator: tuple[TestClient, str]) -> None:
    text = operator[0].get("/metrics").text
    names = [f.name for f in text_string_to_metric_families(text)]
    assert len(names) == len(set(names)), "two families with one name"
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert {
        "monitor_feeds",
        "monitor_outbox_deliveries",
        "monitor_deliveries",
        "monitor_polls",
        "monitor_fetch_seconds",
        "monitor_parse_seconds",
        "monitor_extract_seconds",
        "monitor_match_seconds",
        "monitor_delivery_seconds",
        "monitor_publish_to_alert_seconds",
        "monitor_rule_matches",
        "monitor_rule_alerts",
        "monitor_build_info",
        "process_cpu_seconds",
    } <= set(fams)
    outbox = {s.labels["status"]: s.value for s in fams["monitor_outbox_deliveries"].samples}
    assert outbox.get("failed", 0) + outbox.get("pending", 0) + outbox.get("dead", 0) >= 2


def test_pages_render_hostile_article_text_as_text(operator: tuple[TestClient, str]) -> None:
    c, _ = operator
    timeline = c.get("/alerts")
    assert timeline.status_code == 200
    assert "<script>alert(" not in timeline.text and "&lt;script&gt;alert(" in timeline.text
    alert = c.get("/api/v1/alerts").json()["alerts"][0]
    assert HOSTILE in alert["title"]  # stored as text, as the feed had it
    page = c.get(f"/alerts/{alert['id']}").text
    assert "<script>alert(" not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;" in page
    assert '<mark class="hit">US troops</mark>' in page
    assert 'id="explanation"' in page
    for path in ("/sources", "/deliveries", "/rules"):
        body = c.get(path).text
        assert "<script>alert(" not in body, path


def test_page_forms_work_with_csrf(env: Env, operator: tuple[TestClient, str]) -> None:
    c, csrf = operator
    alert = c.get("/api/v1/alerts").json()["alerts"][0]["id"]
    res = c.post(
        f"/alerts/{alert}/feedback",
        data={"verdict": "relevant", "csrf": csrf},
        follow_redirects=False,
    )
    assert res.status_code == 303 and res.headers["location"] == f"/alerts/{alert}"
    assert "relevant</span> by olga" in c.get(f"/alerts/{alert}").text
    tested = c.post("/rules", data={"text": "Drone strike on US troops", "csrf": csrf})
    assert tested.status_code == 200 and 'us-troops: <span class="matched">matches' in tested.text
    draft = c.post("/rules", data={"text": "a harbour", "query": "harbour", "csrf": csrf})
    assert 'draft: <span class="matched">' in draft.text
    bad = c.post("/rules", data={"text": "x", "query": "(", "csrf": csrf})
    assert 'id="test-error"' in bad.text


def test_healthz_503_when_the_scheduler_stalled(env: Env) -> None:
    stalled = dataclasses.replace(env.console, stalled_after=-1.0)
    res = client_for(stalled).get("/healthz")
    assert res.status_code == 503 and res.json()["status"] == "stalled"
    assert client_for(env.console).get("/healthz").json()["status"] == "ok"


def test_readyz_names_what_is_not_ready(env: Env) -> None:
    from sqlalchemy import create_engine

    no_workers = dataclasses.replace(env.console, workers_up=lambda: False)
    res = client_for(no_workers).get("/readyz")
    assert res.status_code == 503
    assert res.json()["checks"]["workers"] == "the worker pool is not running"
    store = copy.copy(env.console.store)
    store.engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    res = client_for(dataclasses.replace(env.console, store=store)).get("/readyz")
    body = res.json()
    assert res.status_code == 503 and body["checks"]["workers"] is True
    assert "OperationalError" in body["checks"]["database"]
    store.engine.dispose()


def test_events_stream_alerts_as_server_sent_events(env: Env) -> None:
    console = dataclasses.replace(env.console, stopping=asyncio.Event())
    with client_for(console) as c:
        login(c, "ravi")
        threading.Timer(2.5, console.stopping.set).start()  # ends the stream
        res = c.get("/events", params={"after": 0})
    assert res.headers["content-type"].startswith("text/event-stream")
    events = [e for e in res.text.split("\n\n") if e.startswith("id:")]
    ids = [int(e.split("\n")[0][4:]) for e in events]
    assert ids == sorted(ids) and len(ids) == 2  # oldest first, each once
    data = json.loads(events[-1].split("data: ", 1)[1])
    assert data["rule"] == "us-troops" and data["title"].startswith("Drone")
    refused = client_for(console).get("/events", follow_redirects=False)
    assert refused.status_code == 303 and refused.headers["location"].startswith("/login")


def test_readyz_counts_a_pool_not_started_yet_as_ready() -> None:
    """The pool starts with the first task: a daemon with nothing to parse yet is ready; a
    closed pool is not."""
    from monitor.workers import WorkerPool

    pool = WorkerPool(1)
    assert not pool.started and pool.ready
    assert not pool.started  # asking did not start it
    pool.close()
    assert not pool.ready


async def test_readyz_counts_a_started_pool_as_ready_until_it_is_closed() -> None:
    from monitor.workers import WorkerPool

    pool = WorkerPool(1, extraction=False)
    try:
        parsed = await pool.parse_feed(
            b"<rss version='2.0'><channel><title>t</title></channel></rss>",
            url="http://127.0.0.1/f.xml",
            content_type="application/rss+xml",
            timeout=60,
        )
        assert parsed is not None
        assert pool.started and pool.ready
    finally:
        pool.close()
    assert not pool.ready
