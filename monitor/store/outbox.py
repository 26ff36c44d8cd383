"""The outbox: alert deliveries written with the article, claimed with a lease, sent, recorded.

A delivery row is created in the same transaction as the alert it carries. Workers claim due
rows with a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite's `BEGIN IMMEDIATE` already
serialises writers), send, and record the outcome conditionally on still holding the lease, so
a late worker can never overwrite a newer attempt. Nothing is marked sent until the receiver
said so; a crash between send and record means the row is sent again after its lease expires,
with the same idempotency key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from monitor.store import schema as s
from monitor.store.engine import new_id, read_tx, write_tx

CLAIMABLE = ("pending", "failed")
#: The statuses of deliveries not done with (what the health snapshot counts).
BACKLOG = ("pending", "failed", "held", "dead")
STATUSES = ("pending", "failed", "sent", "dead", "held", "digested")


@dataclass(slots=True)
class Delivery:
    id: int
    alert_id: int | None
    channel: str
    kind: str
    idempotency_key: str
    status: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    payload: dict[str, Any]
    created_at: float
    sent_at: float | None = None


#: Deliveries with their alert's message and the explanation in its match row (None for a
#: health notice or a digest).
_DELIVERIES = (
    select(
        s.deliveries,
        s.alerts.c.message.label("alert_message"),
        s.matches.c.explanation.label("alert_why"),
    )
    .outerjoin(s.alerts, s.alerts.c.id == s.deliveries.c.alert_id)
    .outerjoin(
        s.matches,
        and_(s.matches.c.article_id == s.alerts.c.article_id, s.matches.c.rule == s.alerts.c.rule),
    )
)


def message_of(r: Any) -> dict[str, Any]:
    """The message a delivery sends: its alert (stored once, see `alerting.Alert`; its `why`
    from the match row) with the delivery's own fields (kind, idempotency key, the story's
    sources at the time). A delivery without an alert (health, digest), or one queued before
    alerts were stored once, carries its whole message."""
    payload: dict[str, Any] = json.loads(r.payload)
    if r.alert_message is None:
        return payload
    alert: dict[str, Any] = json.loads(r.alert_message)
    if "why" not in alert:  # version 2 on: the explanation is the match row's
        alert["why"] = json.loads(r.alert_why) if r.alert_why else []
    return {**alert, "alert_id": r.alert_id, **payload}


def _row(r: Any) -> Delivery:
    return Delivery(
        id=r.id,
        alert_id=r.alert_id,
        channel=r.channel,
        kind=r.kind,
        idempotency_key=r.idempotency_key,
        status=r.status,
        attempts=r.attempts,
        next_attempt_at=r.next_attempt_at,
        last_error=r.last_error,
        payload=message_of(r),
        created_at=r.created_at,
        sent_at=r.sent_at,
    )


@dataclass(frozen=True, slots=True)
class Enqueue:
    """Where one delivery goes: its channel, kind and idempotency key (unique)."""

    channel: str
    kind: str
    key: str
    alert_id: int | None = None
    held: bool = False  # kept for the channel's digest


def enqueue(conn: Connection, item: Enqueue, *, payload: dict[str, Any], now: float) -> bool:
    """Add a delivery inside the caller's transaction. False if its key was already queued."""
    exists = conn.execute(
        select(s.deliveries.c.id).where(s.deliveries.c.idempotency_key == item.key)
    ).first()
    if exists:
        return False
    conn.execute(
        insert(s.deliveries).values(
            alert_id=item.alert_id,
            channel=item.channel,
            kind=item.kind,
            idempotency_key=item.key,
            status="held" if item.held else "pending",
            attempts=0,
            next_attempt_at=now,
            payload=json.dumps(payload),
            created_at=now,
        )
    )
    return True


def _claim_query(
    dialect: str, channels: set[str] | None, now: float, limit: int
) -> tuple[Any, dict[str, Any]]:
    """The ids of the first `limit` claimable deliveries due at `now`, read from the claim
    index (`ix_deliveries_claim`) in its order, never by sorting the backlog."""
    params: dict[str, Any] = {"now": now, "limit": limit}
    if dialect == "sqlite":
        # Spelled out, with INDEXED BY: with statistics, SQLite's planner preferred the
        # (channel, status) index and a sort of every claimable row.
        where = f"{s.CLAIMABLE_SQL} AND next_attempt_at <= :now"
        where += " AND (lease_until IS NULL OR lease_until < :now)"
        q = text(
            "SELECT id FROM deliveries INDEXED BY ix_deliveries_claim WHERE "
            + where
            + (" AND channel IN :channels" if channels is not None else "")
            + " ORDER BY next_attempt_at, id LIMIT :limit"
        )
        if channels is not None:
            q = q.bindparams(bindparam("channels", expanding=True))
            params["channels"] = sorted(channels)
        return q, params
    d = s.deliveries.c
    cond = and_(
        text(s.CLAIMABLE_SQL),  # literal: the condition of ix_deliveries_claim
        d.next_attempt_at <= now,
        or_(d.lease_until.is_(None), d.lease_until < now),
    )
    if channels is not None:
        cond = and_(cond, d.channel.in_(sorted(channels)))
    sel = select(d.id).where(cond).order_by(d.next_attempt_at, d.id).limit(limit)
    return sel.with_for_update(skip_locked=True), {}


class Outbox:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def claim(
        self, owner: str, *, limit: int, lease: float, now: float, channels: set[str] | None = None
    ) -> list[Delivery]:
        """Lease up to `limit` due deliveries, oldest due first."""
        with write_tx(self.engine) as conn:
            ids = list(
                conn.execute(*_claim_query(conn.dialect.name, channels, now, limit)).scalars()
            )
            if not ids:
                return []
            conn.execute(
                update(s.deliveries)
                .where(s.deliveries.c.id.in_(ids))
                .values(lease_owner=owner, lease_until=now + lease)
            )
            rows = conn.execute(
                _DELIVERIES.where(s.deliveries.c.id.in_(ids)).order_by(
                    s.deliveries.c.next_attempt_at, s.deliveries.c.id
                )
            )
            return [_row(r) for r in rows]

    def mark_sent(self, delivery_id: int, owner: str, *, receipt: str, now: float) -> bool:
        with write_tx(self.engine) as conn:
            res = conn.execute(
                update(s.deliveries)
                .where(s.deliveries.c.id == delivery_id, s.deliveries.c.lease_owner == owner)
                .values(
                    status="sent",
                    sent_at=now,
                    receipt=receipt[:2000],
                    lease_owner=None,
                    lease_until=None,
                    attempts=s.deliveries.c.attempts + 1,
                    last_error=None,
                )
            )
            return bool(res.rowcount)

    def mark_failed(
        self, delivery_id: int, owner: str, *, error: str, now: float, retry_at: float | None
    ) -> bool:
        """Record a failed attempt; `retry_at=None` makes the delivery dead."""
        with write_tx(self.engine) as conn:
            res = conn.execute(
                update(s.deliveries)
                .where(s.deliveries.c.id == delivery_id, s.deliveries.c.lease_owner == owner)
                .values(
                    status="dead" if retry_at is None else "failed",
                    next_attempt_at=retry_at if retry_at is not None else now,
                    last_error=error[:2000],
                    lease_owner=None,
                    lease_until=None,
                    attempts=s.deliveries.c.attempts + 1,
                )
            )
            return bool(res.rowcount)

    def release(self, delivery_id: int, owner: str, *, at: float) -> None:
        """Give a claimed delivery back untried (rate limit, shutdown): no attempt counted."""
        with write_tx(self.engine) as conn:
            conn.execute(
                update(s.deliveries)
                .where(s.deliveries.c.id == delivery_id, s.deliveries.c.lease_owner == owner)
                .values(next_attempt_at=at, lease_owner=None, lease_until=None)
            )

    def list_deliveries(self, status: str | None = None, limit: int = 100) -> list[Delivery]:
        with read_tx(self.engine) as conn:
            q = _DELIVERIES.order_by(s.deliveries.c.id.desc()).limit(limit)
            if status:
                q = q.where(s.deliveries.c.status == status)
            return [_row(r) for r in conn.execute(q)]

    def retry(self, ids: list[int] | None = None, *, dead: bool = False, now: float) -> int:
        """Make failed or dead deliveries due now (replay). Returns how many."""
        with write_tx(self.engine) as conn:
            q = update(s.deliveries).where(s.deliveries.c.status.in_(("failed", "dead")))
            if ids:
                q = q.where(s.deliveries.c.id.in_(ids))
            elif dead:
                q = q.where(s.deliveries.c.status == "dead")
            else:
                return 0
            res = conn.execute(
                q.values(status="pending", next_attempt_at=now, lease_owner=None, lease_until=None)
            )
            return int(res.rowcount)

    def stats(self, now: float) -> dict[str, Any]:
        with read_tx(self.engine) as conn:
            counts: dict[str, int] = {
                str(row[0]): int(row[1])
                for row in conn.execute(
                    select(s.deliveries.c.status, func.count()).group_by(s.deliveries.c.status)
                )
            }
            oldest = conn.execute(
                select(func.min(s.deliveries.c.created_at)).where(
                    s.deliveries.c.status.in_(CLAIMABLE)
                )
            ).scalar()
        return {
            "by_status": {k: int(v) for k, v in counts.items()},
            "pending": int(counts.get("pending", 0)) + int(counts.get("failed", 0)),
            "dead": int(counts.get("dead", 0)),
            "oldest_pending_age": (now - oldest) if oldest is not None else None,
        }

    def backlog(self, now: float) -> dict[str, Any]:
        """The outbox as /healthz and /metrics show it: the deliveries still to send or to
        look at (pending, failed, held, dead) by status, and the age of the oldest due one.

        Bounded by the backlog, not the history: each status is a range of the
        `(status, alert_id)` index, and the oldest due delivery is read through the claim's
        partial index. Sent and digested deliveries, nearly all rows, are not counted here
        (`stats` counts them, for `monitor status`): counting every row took over 100 ms at
        1,000,000 deliveries (bench/bench_health.py)."""
        d = s.deliveries.c
        with read_tx(self.engine) as conn:
            counts = {
                str(status): int(n)
                for status, n in conn.execute(
                    select(d.status, func.count()).where(d.status.in_(BACKLOG)).group_by(d.status)
                )
            }
            oldest = conn.execute(
                select(func.min(d.created_at)).where(text(s.CLAIMABLE_SQL))
            ).scalar()
        return {
            "by_status": {k: counts[k] for k in BACKLOG if counts.get(k)},
            "pending": counts.get("pending", 0) + counts.get("failed", 0),
            "dead": counts.get("dead", 0),
            "oldest_pending_age": (now - oldest) if oldest is not None else None,
        }

    def collect_digest(
        self,
        channel: str,
        *,
        period: str,
        now: float,
        build: Any,
        until: float | None = None,
    ) -> int | None:
        """Turn the channel's held deliveries into one digest delivery, once per period.

        `build(list_of_payloads) -> payload` makes the digest message; it holds the deliveries
        created up to `until` (the period's end; default `now`). The digest's idempotency key
        names the channel and period, so a restart in the middle of a period, or a second node,
        can never produce a second digest for it.
        """
        key = f"digest:{channel}:{period}"
        cutoff = now if until is None else until
        with write_tx(self.engine) as conn:
            if conn.execute(
                select(s.deliveries.c.id).where(s.deliveries.c.idempotency_key == key)
            ).first():
                return None
            held = conn.execute(
                _DELIVERIES.where(
                    s.deliveries.c.channel == channel,
                    s.deliveries.c.status == "held",
                    s.deliveries.c.created_at <= cutoff,
                ).order_by(s.deliveries.c.id)
            ).all()
            if not held:
                return None
            payload = build([message_of(r) for r in held])
            try:
                # A savepoint: on PostgreSQL a failed statement aborts the whole transaction,
                # and another node inserting the same period's digest first is not an error.
                with conn.begin_nested():
                    digest_id = new_id(
                        conn.execute(
                            insert(s.deliveries).values(
                                channel=channel,
                                kind="digest",
                                idempotency_key=key,
                                status="pending",
                                attempts=0,
                                next_attempt_at=now,
                                payload=json.dumps(payload),
                                created_at=now,
                            )
                        )
                    )
            except IntegrityError:
                return None
            conn.execute(
                update(s.deliveries)
                .where(s.deliveries.c.id.in_([r.id for r in held]))
                .values(status="digested", digest_id=digest_id, sent_at=None)
            )
            return digest_id
