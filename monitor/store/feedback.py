"""Analysts' verdicts on alerts: `monitor feedback ALERT_ID relevant|irrelevant`.

A verdict is labelled data: `monitor evaluate` and `monitor train` read the latest verdict of
every alert (`labelled`) together with the article the alert was raised for. Several verdicts
on one alert are kept (who said what, when); the newest one counts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Engine, func, insert, select

from monitor.errors import UnknownAlert
from monitor.store import schema as s
from monitor.store.engine import new_id, read_tx, write_tx

VERDICTS = ("relevant", "irrelevant")


@dataclass(frozen=True, slots=True)
class Feedback:
    id: int
    alert_id: int
    verdict: str
    note: str | None
    author: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class LabelledAlert:
    """The latest verdict on one alert, with the article and rule it was raised for."""

    alert_id: int
    rule: str
    verdict: str
    relevant: bool
    title: str
    summary: str
    body: str
    url: str
    note: str | None
    created_at: float


class FeedbackRepo:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(
        self,
        alert_id: int,
        verdict: str,
        *,
        note: str | None = None,
        author: str | None = None,
        now: float | None = None,
    ) -> int:
        """Store a verdict: UnknownAlert for an unknown alert, ValueError for a bad verdict."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
        with write_tx(self.engine) as conn:
            found = conn.execute(select(s.alerts.c.id).where(s.alerts.c.id == alert_id)).first()
            if found is None:
                raise UnknownAlert(alert_id)
            res = conn.execute(
                insert(s.feedback).values(
                    alert_id=alert_id,
                    verdict=verdict,
                    note=note,
                    author=author,
                    created_at=time.time() if now is None else now,
                )
            )
            return new_id(res)

    def for_alert(self, alert_id: int) -> list[Feedback]:
        """Every verdict on one alert, oldest first."""
        f = s.feedback
        with read_tx(self.engine) as conn:
            rows = conn.execute(
                select(f.c.id, f.c.alert_id, f.c.verdict, f.c.note, f.c.author, f.c.created_at)
                .where(f.c.alert_id == alert_id)
                .order_by(f.c.created_at, f.c.id)
            ).all()
        return [Feedback(*row) for row in rows]

    def labelled(self, rule: str | None = None) -> list[LabelledAlert]:
        """The latest verdict per alert (of `rule`, or of every rule), oldest alert first."""
        f, a, art = s.feedback, s.alerts, s.articles
        latest = (
            select(f.c.alert_id, func.max(f.c.id).label("fid")).group_by(f.c.alert_id).subquery()
        )
        query = (
            select(
                a.c.id,
                a.c.rule,
                f.c.verdict,
                art.c.title,
                art.c.summary,
                art.c.body,
                art.c.url,
                f.c.note,
                f.c.created_at,
            )
            .select_from(
                latest.join(f, f.c.id == latest.c.fid)
                .join(a, a.c.id == f.c.alert_id)
                .join(art, art.c.id == a.c.article_id)
            )
            .order_by(a.c.id)
        )
        if rule is not None:
            query = query.where(a.c.rule == rule)
        with read_tx(self.engine) as conn:
            rows = conn.execute(query).all()
        return [
            LabelledAlert(
                alert_id=int(r.id),
                rule=str(r.rule),
                verdict=str(r.verdict),
                relevant=r.verdict == "relevant",
                title=str(r.title or ""),
                summary=str(r.summary or ""),
                body=str(r.body or ""),
                url=str(r.url or ""),
                note=r.note,
                created_at=float(r.created_at),
            )
            for r in rows
        ]
