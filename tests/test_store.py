"""The store on SQLite and on a real PostgreSQL: migrations, leases, one-transaction commits,
one alert per (rule, story), the outbox's claim/record cycle, digests and health events."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from monitor.alerting import Alert
from monitor.models import Article
from monitor.notify.message import AlertMessage
from monitor.polling import (
    Failure,
    FeedHints,
    FeedUpdate,
    FetchSummary,
    PollPolicy,
    plan_after_failure,
    plan_next_poll,
)
from monitor.store import Enqueue, FeedSpec, NewArticle, PollResult, Route, RuleHit, Store
from monitor.store import schema as s
from monitor.store.engine import write_tx
from monitor.store.polls import Notice, commit_poll
from monitor.stories import StoryIndex

ROOT = Path(__file__).resolve().parents[1]

NOW = 1_800_000_000.0


def stories() -> StoryIndex:
    return StoryIndex(window=72 * 3600)


def message(title: str) -> dict[str, Any]:
    return {
        "kind": "alert",
        "idempotency_key": "",
        "alert_id": None,
        "rule": None,
        "severity": "high",
        "title": title,
        "url": None,
        "source": "feed",
        "published": None,
        "snippet": title,
        "highlights": [],
        "story_id": None,
        "sources": [],
        "why": [],
        "created_at": datetime.fromtimestamp(NOW, UTC).isoformat(),
    }


def hit(rule: str = "r", channels: list[tuple[str, bool]] | None = None, **kw: Any) -> RuleHit:
    route = Route(rule=rule, severity="high", channels=channels or [("hook", False)], **kw)
    return RuleHit(route, Alert.from_dict(message("t")))


def open_store(url: str) -> tuple[Store, int]:
    st = Store(url)
    st.feeds.sync(
        [
            FeedSpec("http://news.example/feed", "News", False),
            FeedSpec("http://other.example/feed", "Other", False),
        ],
        NOW,
    )
    feed = st.feeds.get("http://news.example/feed")
    assert feed is not None
    return st, feed.id


def commit(
    st: Store, feed_id: int, guid: str, title: str, url: str, *hits: RuleHit, now: float = NOW
) -> Any:
    art = Article(feed="News", guid=guid, url=url, title=title, body="")
    idx = stories()
    return st.articles.commit(
        [NewArticle(art, idx.fingerprint(art), list(hits))],
        feed_id=feed_id,
        stories=idx,
        now=now,
    )[0]


def _alembic_config() -> Any:
    from alembic.config import Config as AlembicConfig

    from monitor.store.engine import MIGRATIONS

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def test_migrations_create_exactly_the_declared_schema(store_url: str) -> None:
    """The Alembic migrations, run from an empty database, build `schema.metadata`: the schema
    a new database gets directly (see the next test)."""
    from alembic import command

    from monitor.store.engine import HEAD_REVISION, make_engine

    engine = make_engine(store_url)
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == HEAD_REVISION
        assert compare_metadata(MigrationContext.configure(conn), s.metadata) == []
    engine.dispose()
    Store(store_url).close()  # opening a migrated database is a no-op


def _claim_index_sql(conn: Any) -> str:
    if conn.dialect.name == "postgresql":
        q = "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_deliveries_claim'"
    else:
        q = "SELECT sql FROM sqlite_master WHERE name = 'ix_deliveries_claim'"
    return str(conn.exec_driver_sql(q).scalar_one())


def test_the_claim_index_is_partial_on_both_engines(store_url: str) -> None:
    """Its PostgreSQL condition is declared when a PostgreSQL engine is made
    (`schema.declare_postgresql`), not at import: a new database still gets it."""
    st = Store(store_url)
    with st.engine.connect() as conn:
        sql = _claim_index_sql(conn)
    st.close()
    assert "WHERE" in sql.upper() and "pending" in sql, sql


def test_a_new_database_gets_the_schema_and_a_stamp_alembic_reads(store_url: str) -> None:
    from alembic import command

    from monitor.store.engine import HEAD_REVISION

    st = Store(store_url)  # empty database: the declared schema, stamped, without Alembic
    with st.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), s.metadata) == []
        assert MigrationContext.configure(conn).get_current_revision() == HEAD_REVISION
    # Alembic finds nothing to do on it (the stamp is in its own table, in its own format).
    cfg = _alembic_config()
    with st.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        assert MigrationContext.configure(conn).get_current_revision() == HEAD_REVISION
    st.close()
    Store(store_url).close()


def test_an_entry_is_stored_once(store_url: str) -> None:
    st, fid = open_store(store_url)
    first = commit(st, fid, "g1", "US base attacked in Syria today", "http://news.example/a")
    again = commit(
        st, fid, "g1", "US base attacked in Syria today (updated)", "http://news.example/a"
    )
    assert first.article_id is not None
    assert again.article_id is None
    assert st.articles.seen_guids(fid, ["g1", "g2"]) == {"g1"}


def test_one_alert_per_rule_and_story_with_its_deliveries(store_url: str) -> None:
    st, fid = open_store(store_url)
    a = commit(
        st,
        fid,
        "g1",
        "Drone strike on US base in Syria wounds three",
        "http://news.example/a?utm_source=x",
        hit(channels=[("hook", False), ("mail", False)]),
    )
    b = commit(
        st,
        fid,
        "g2",
        "Drone strike on US base in Syria wounds three",
        "http://news.example/a",
        hit(channels=[("hook", False), ("mail", False)]),
    )
    assert a.alerts == ["r"] and a.deliveries == 2
    assert b.story_id == a.story_id and b.alerts == [] and b.deliveries == 0
    rows = st.outbox.list_deliveries()
    assert sorted(d.channel for d in rows) == ["hook", "mail"]
    assert all(d.payload["story_id"] == a.story_id for d in rows)
    assert len({d.idempotency_key for d in rows}) == 2


def test_an_alert_is_stored_once_and_its_deliveries_keep_only_their_own_fields(
    store_url: str,
) -> None:
    st, fid = open_store(store_url)
    why = [{"field": "title", "leaf": "drone", "text": "Drone", "start": 0, "end": 5}]
    alert = dataclasses.replace(Alert.from_dict(message("Drone strike")), rule="r", why=why)
    route = Route(rule="r", severity="high", channels=[("hook", False), ("mail", False)])
    a = commit(st, fid, "g1", "Drone strike", "http://news.example/a", RuleHit(route, alert))
    assert a.alerts == ["r"]
    with st.engine.connect() as conn:
        [stored] = conn.execute(select(s.alerts.c.message)).scalars().all()
        [explained] = conn.execute(select(s.matches.c.explanation)).scalars().all()
        payloads = conn.execute(select(s.deliveries.c.payload)).scalars().all()
    # The explanation's one copy is the match row's; the alert's message does not repeat it.
    assert json.loads(stored)["v"] == 2 and "why" not in json.loads(stored)
    assert json.loads(explained) == why
    for raw in payloads:  # no copy of the alert (title, snippet, explanation) per channel
        assert set(json.loads(raw)) == {"kind", "idempotency_key", "story_id", "sources"}
    for d in st.outbox.list_deliveries():  # what a channel gets: the alert and its own fields
        msg = AlertMessage.from_dict(d.payload)
        assert (msg.title, msg.why, msg.alert_id) == ("Drone strike", why, d.alert_id)
        assert msg.idempotency_key == d.idempotency_key and msg.story_id == a.story_id


def test_an_alert_stored_with_its_own_explanation_before_version_2_still_reads(
    store_url: str,
) -> None:
    st, fid = open_store(store_url)
    why = [{"field": "title", "leaf": "drone", "text": "Drone", "start": 0, "end": 5}]
    alert = dataclasses.replace(Alert.from_dict(message("Drone strike")), rule="r", why=why)
    route = Route(rule="r", severity="high", channels=[("hook", False)])
    commit(st, fid, "g1", "Drone strike", "http://news.example/a", RuleHit(route, alert))
    old_why = [{"field": "title", "leaf": "old", "text": "Drone", "start": 0, "end": 5}]
    with write_tx(st.engine) as conn:  # as version 1 stored it: the message carried `why`
        conn.execute(
            s.alerts.update().values(
                message=json.dumps({**alert.to_dict(), "v": 1, "why": old_why})
            )
        )
        conn.execute(s.matches.delete())  # and nothing else holds it
    [d] = st.outbox.list_deliveries()
    assert AlertMessage.from_dict(d.payload).why == old_why


def test_updates_follow_when_a_story_gains_a_source(store_url: str) -> None:
    st, fid = open_store(store_url)
    other = st.feeds.get("http://other.example/feed")
    assert other is not None
    commit(
        st,
        fid,
        "g1",
        "Rocket attack on US base in Iraq injures two",
        "http://news.example/a",
        hit(updates=True),
    )
    art = Article(
        feed="Other",
        guid="x1",
        url="http://other.example/b",
        title="Rocket attack on US base in Iraq injures two",
        body="",
    )
    idx = stories()
    res = st.articles.commit(
        [NewArticle(art, idx.fingerprint(art), [hit(updates=True)])],
        feed_id=other.id,
        stories=idx,
        now=NOW + 60,
    )[0]
    assert res.updates == ["r"]
    kinds = sorted(d.kind for d in st.outbox.list_deliveries())
    assert kinds == ["alert", "story.updated"]
    update = next(d for d in st.outbox.list_deliveries() if d.kind == "story.updated")
    assert [src["feed"] for src in update.payload["sources"]] == ["News", "Other"]


def test_cooldown_suppresses_alerts_of_the_same_rule(store_url: str) -> None:
    st, fid = open_store(store_url)
    a = commit(
        st, fid, "g1", "First story about an attack on US troops", "http://n/1", hit(cooldown=3600)
    )
    b = commit(
        st,
        fid,
        "g2",
        "A completely different second story here",
        "http://n/2",
        hit(cooldown=3600),
        now=NOW + 60,
    )
    c = commit(
        st,
        fid,
        "g3",
        "A third unrelated story after the cooldown",
        "http://n/3",
        hit(cooldown=3600),
        now=NOW + 3700,
    )
    assert (a.alerts, b.suppressed, c.alerts) == (["r"], ["r"], ["r"])


def test_concurrent_leases_never_hand_a_feed_to_two_owners(store_url: str) -> None:
    st = Store(store_url)
    st.feeds.sync([FeedSpec(f"http://n{i}.example/feed", f"n{i}", False) for i in range(60)], NOW)
    got: dict[str, list[int]] = {}

    def worker(name: str) -> None:
        mine: list[int] = []
        while True:
            batch = st.feeds.lease_due(name, limit=5, lease=60, now=NOW + 1)
            if not batch:
                break
            mine += [f.id for f in batch]
        got[name] = mine

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    leased = [fid for ids in got.values() for fid in ids]
    assert sorted(leased) == sorted(set(leased))
    assert len(leased) == 60


def test_a_late_finisher_cannot_overwrite_a_newer_lease(store_url: str) -> None:
    st = Store(store_url)
    st.feeds.sync([FeedSpec("http://news.example/feed", "News", False)], NOW)
    [old] = st.feeds.lease_due("old", limit=1, lease=10, now=NOW)
    [new] = st.feeds.lease_due("new", limit=1, lease=10, now=NOW + 11)  # old lease expired
    assert old.id == new.id

    def good(etag: str) -> FeedUpdate:
        return FeedUpdate(now=NOW + 12, next_poll_at=NOW + 600, min_interval=None, etag=etag)

    with write_tx(st.engine) as conn:
        assert not st.feeds.apply(conn, old, "old", good("x"), 0)
        assert st.feeds.apply(conn, new, "new", good("y"), 0)
    feed = st.feeds.get(old.url)
    assert feed is not None and feed.etag == "y"


def test_broken_and_recovered_are_reported_once(store_url: str) -> None:
    st, _ = open_store(store_url)
    policy = PollPolicy(
        interval=600,
        min_interval=60,
        max_interval=3600,
        adaptive=False,
        backoff_base=60,
        backoff_max=1800,
        broken_after=3600,
    )
    events: list[str] = []

    def commit(feed: Any, update: FeedUpdate) -> None:
        notices = []
        if update.health:
            events.append(update.health)
            to = Enqueue(channel="ops", kind=update.health, key=f"h:{feed.id}:{update.health}")
            notices.append(Notice(to, message(update.health)))
        with write_tx(st.engine) as conn:
            commit_poll(
                PollResult(feed, "me", update, notices=notices), st.feeds, st.articles, conn
            )

    def lease(at: float) -> Any:
        due = st.feeds.lease_due("me", limit=5, lease=60, now=at)
        return next((x for x in due if x.url == "http://news.example/feed"), None)

    t = NOW
    for _ in range(4):  # failing for 3 x 30 min: broken after 1 h
        with write_tx(st.engine) as conn:  # due again, whatever the backoff said
            conn.execute(s.feeds.update().values(next_poll_at=t))
        f = lease(t)
        assert f is not None
        commit(f, plan_after_failure(f, Failure("http_status", "HTTP 500"), policy, t))
        t += 1800
    assert events == ["source.broken"]
    with write_tx(st.engine) as conn:
        conn.execute(s.feeds.update().values(next_poll_at=t))
    f = lease(t + 1)
    commit(f, plan_next_poll(f, FetchSummary(changed=True), FeedHints(), policy, t + 1))
    assert events == ["source.broken", "source.recovered"]
    assert [d.kind for d in st.outbox.list_deliveries()] == ["source.recovered", "source.broken"]


def test_outbox_claims_with_a_lease_and_records_only_for_the_owner(store_url: str) -> None:
    st, fid = open_store(store_url)
    commit(
        st,
        fid,
        "g1",
        "An alert worth sending to two channels",
        "http://n/1",
        hit(channels=[("hook", False), ("mail", False)]),
    )
    first = st.outbox.claim("a", limit=10, lease=30, now=NOW)
    assert len(first) == 2
    assert st.outbox.claim("b", limit=10, lease=30, now=NOW + 1) == []  # leased
    assert not st.outbox.mark_sent(first[0].id, "b", receipt="200", now=NOW + 2)
    assert st.outbox.mark_sent(first[0].id, "a", receipt="200", now=NOW + 2)
    assert st.outbox.mark_failed(first[1].id, "a", error="HTTP 500", now=NOW + 2, retry_at=NOW + 60)
    assert st.outbox.claim("b", limit=10, lease=30, now=NOW + 30) == []  # not due yet
    [again] = st.outbox.claim("b", limit=10, lease=30, now=NOW + 61)
    assert again.id == first[1].id and again.attempts == 1
    assert st.outbox.mark_failed(again.id, "b", error="HTTP 404", now=NOW + 62, retry_at=None)
    assert [d.id for d in st.outbox.list_deliveries("dead")] == [again.id]
    assert st.outbox.retry(dead=True, now=NOW + 100) == 1
    [replayed] = st.outbox.claim("c", limit=10, lease=30, now=NOW + 100)
    assert replayed.id == again.id
    stats = st.outbox.stats(NOW + 100)
    assert stats["by_status"]["sent"] == 1


def test_digest_is_collected_once_per_period(store_url: str) -> None:
    st, fid = open_store(store_url)
    for i in range(3):
        commit(
            st,
            fid,
            f"g{i}",
            f"Digest story number {i} about something",
            f"http://n/{i}",
            hit(rule=f"r{i}", channels=[("daily", True)]),
        )
    assert st.outbox.claim("a", limit=10, lease=30, now=NOW) == []  # held for the digest

    def build(items: list[dict[str, Any]]) -> dict[str, Any]:
        return dict(message(f"{len(items)} alerts"), kind="digest", items=items)

    did = st.outbox.collect_digest("daily", period="2027-01-15T08:00", now=NOW + 10, build=build)
    assert did is not None
    assert (
        st.outbox.collect_digest("daily", period="2027-01-15T08:00", now=NOW + 20, build=build)
        is None
    )
    [digest] = st.outbox.claim("a", limit=10, lease=30, now=NOW + 30)
    assert digest.kind == "digest" and len(digest.payload["items"]) == 3
    with write_tx(st.engine) as conn:
        statuses = set(
            conn.execute(
                select(s.deliveries.c.status).where(s.deliveries.c.kind == "alert")
            ).scalars()
        )
    assert statuses == {"digested"}


def test_store_survives_reopening(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    st, fid = open_store(url)
    commit(st, fid, "g1", "Story that must be remembered across restarts", "http://n/1", hit())
    st.close()
    st2 = Store(url)
    assert st2.articles.seen_guids(fid, ["g1"]) == {"g1"}
    assert len(st2.outbox.list_deliveries()) == 1


def test_leases_of_a_dead_process_on_this_host_are_taken_back(store_url: str) -> None:
    import os
    import subprocess
    import sys

    st = Store(store_url)
    st.feeds.sync([FeedSpec("http://news.example/feed", "News", False)], NOW)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_owner = f"thishost:{gone.stdout.strip()}:abc"
    alive_owner = f"thishost:{os.getpid()}:def"
    other_host = f"elsewhere:{gone.stdout.strip()}:ghi"
    [f] = st.feeds.lease_due(dead_owner, limit=1, lease=300, now=NOW)
    assert st.feeds.lease_due("x", limit=1, lease=300, now=NOW + 1) == []
    assert st.reclaim_orphaned_leases("thishost", NOW + 2) == 1
    [again] = st.feeds.lease_due(alive_owner, limit=1, lease=300, now=NOW + 3)
    assert again.id == f.id
    # A live process's lease, and another host's, are left alone.
    assert st.reclaim_orphaned_leases("thishost", NOW + 4) == 0
    st.feeds.release(again, alive_owner)
    st.feeds.lease_due(other_host, limit=1, lease=300, now=NOW + 5)
    assert st.reclaim_orphaned_leases("thishost", NOW + 6) == 0


def test_min_sources_alerts_once_the_story_has_enough_outlets(store_url: str) -> None:
    st, fid = open_store(store_url)
    other = st.feeds.get("http://other.example/feed")
    assert other is not None
    route = Route(rule="r", severity="high", channels=[("hook", False)], min_sources=2, within=3600)
    first = commit(
        st,
        fid,
        "g1",
        "Explosion near US base in Syria, several hurt",
        "http://news.example/a",
        RuleHit(route, Alert.from_dict(message("t"))),
    )
    assert first.suppressed == ["r"] and st.outbox.list_deliveries() == []
    # The second outlet's article joins the story without matching the rule itself.
    art = Article(
        feed="Other",
        guid="o1",
        url="http://news.example/a?utm_source=rss",
        title="Blast reported near a base in Syria",
        body="",
    )
    idx = stories()
    res = st.articles.commit(
        [NewArticle(art, idx.fingerprint(art), [])],
        feed_id=other.id,
        stories=idx,
        now=NOW + 60,
        routes={"r": route},
    )[0]
    assert res.story_id == first.story_id and res.alerts == ["r"]
    [d] = st.outbox.list_deliveries()
    assert [src["feed"] for src in d.payload["sources"]] == ["News", "Other"]


def test_a_database_of_an_older_revision_is_upgraded_in_place(store_url: str) -> None:
    from alembic import command
    from alembic.config import Config as AlembicConfig

    from monitor.store.engine import MIGRATIONS, make_engine

    engine = make_engine(store_url)
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(
            s.feeds.insert().values(
                url="http://old.example/feed",
                fetch_url="http://old.example/feed",
                name="Old",
                active=True,
                allow_private=False,
                next_poll_at=0.0,
                consecutive_failures=0,
                broken_reported=False,
                redirect_count=0,
                polls=3,
                entries_total=7,
                created_at=NOW,
            )
        )
    engine.dispose()
    st = Store(store_url)  # opening the store migrates to the newest revision
    feed = st.feeds.get("http://old.example/feed")
    assert feed is not None and feed.polls == 3 and feed.skip is None
    with st.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), s.metadata) == []


def test_head_revision_is_alembics_head_and_the_store_never_loads_alembic_for_it(
    store_url: str,
) -> None:
    """`migrate` skips Alembic when the database is at `HEAD_REVISION`: that constant must
    name the newest migration, or a new migration would never run."""
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    from monitor.store.engine import HEAD_REVISION, MIGRATIONS, current_revision

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_heads() == [HEAD_REVISION]
    code = (
        "import sys; from monitor.store import Store; "
        f"Store({store_url!r}).close(); print('alembic' in sys.modules)"
    )
    for _ in ("a new database", "a current one"):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
        )
        assert out.stdout.strip() == "False", out.stderr
    st = Store(store_url)
    assert current_revision(st.engine) == HEAD_REVISION
    st.close()
