"""The feedback store on SQLite and on a real PostgreSQL: verdicts on alerts, the latest one per
alert as labelled data, unknown alerts and bad verdicts refused."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from monitor.errors import UnknownAlert
from monitor.models import Article
from monitor.store import Route, RuleHit, Store
from monitor.store import schema as sc
from monitor.stories import StoryIndex
from tests.test_store import NOW, message, open_store


def alert(st: Store, feed_id: int, guid: str, title: str, rule: str) -> int:
    art = Article(
        feed="News",
        guid=guid,
        url=f"http://news.example/{guid}",
        title=title,
        summary="summary " + guid,
        body="body " + guid,
    )
    idx = StoryIndex(window=72 * 3600)
    route = Route(rule=rule, severity="high", channels=[("hook", False)])
    res = st.articles.commit_article(
        feed_id=feed_id,
        article=art,
        fingerprint=idx.fingerprint(art),
        hits=[RuleHit(route=route, explanation=[], message=message(title))],
        stories=idx,
        now=NOW,
    )
    assert res.alerts == [rule]
    with st.engine.connect() as conn:
        return int(
            conn.execute(
                select(sc.alerts.c.id).where(sc.alerts.c.article_id == res.article_id)
            ).scalar_one()
        )


def test_verdicts_are_stored_and_the_latest_one_labels_the_alert(store_url: str) -> None:
    st, fid = open_store(store_url)
    a1 = alert(st, fid, "g1", "Rocket attack on US base in Iraq", "troops")
    a2 = alert(st, fid, "g2", "Army band plays in Ohio", "troops")
    a3 = alert(st, fid, "g3", "Central bank raises rates", "rates")
    st.feedback.add(a1, "irrelevant", note="misread", author="ann", now=NOW)
    st.feedback.add(a1, "relevant", author="bob", now=NOW + 1)
    st.feedback.add(a2, "irrelevant", now=NOW + 2)
    st.feedback.add(a3, "relevant", now=NOW + 3)

    history = st.feedback.for_alert(a1)
    assert [(f.verdict, f.author, f.note) for f in history] == [
        ("irrelevant", "ann", "misread"),
        ("relevant", "bob", None),
    ]
    troops = st.feedback.labelled("troops")
    assert [(x.alert_id, x.relevant) for x in troops] == [(a1, True), (a2, False)]
    assert troops[0].title == "Rocket attack on US base in Iraq"
    assert troops[0].summary == "summary g1" and troops[0].body == "body g1"
    assert troops[0].url == "http://news.example/g1" and troops[0].rule == "troops"
    assert {x.rule for x in st.feedback.labelled()} == {"troops", "rates"}
    assert st.feedback.for_alert(a3)[0].created_at == NOW + 3
    st.close()


def test_an_unknown_alert_and_a_bad_verdict_are_refused(store_url: str) -> None:
    st, fid = open_store(store_url)
    a1 = alert(st, fid, "g1", "Rocket attack on US base in Iraq", "troops")
    with pytest.raises(UnknownAlert, match="no alert with id 999"):
        st.feedback.add(999, "relevant")
    with pytest.raises(ValueError, match="relevant, irrelevant"):
        st.feedback.add(a1, "maybe")
    assert st.feedback.for_alert(a1) == [] and st.feedback.labelled() == []
    st.close()
