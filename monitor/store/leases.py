"""Short leases, renewed while the work runs: the heartbeat of one node.

A node leases a feed to poll it and a delivery to send it. The lease lasts `daemon.lease_term`
(20 s by default) and the node renews it every `daemon.heartbeat` (5 s) for as long as the
poll or the send is in flight, so a live node's work is never taken from it, however long it
runs, while the work of a node that died (SIGKILL, a lost machine) is free again one lease
term after its last heartbeat, not after the longest a poll may take.

Only the work this node has in flight is renewed (`Held`), never "everything leased by this
owner": a poll whose lease was left behind (its commit failed, say) expires as it should.
A renewal is conditional on the lease still being this node's, so a node that was stalled for
longer than a lease term cannot take back work another node has already taken over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine, Table, bindparam, select, update

from monitor.store import schema as s
from monitor.store.engine import write_tx

log = logging.getLogger("monitor.store.leases")


@dataclass(slots=True)
class Held:
    """The ids of the feeds and deliveries this node has in flight (event loop only)."""

    feeds: set[int] = field(default_factory=set)
    deliveries: set[int] = field(default_factory=set)


def _renewal(table: Table) -> object:
    # The rows are locked in id order, skipping any the node's own writer holds (it is
    # committing that poll or send, which settles the lease anyway; the next beat renews
    # what is still in flight). A plain UPDATE ... WHERE id IN (...) locked them in whatever
    # order the plan chose and could deadlock with the writer on PostgreSQL. SQLite, whose
    # writers are serial, compiles no FOR UPDATE.
    mine = (
        select(table.c.id)
        .where(
            table.c.id.in_(bindparam("ids", expanding=True)),
            table.c.lease_owner == bindparam("owner"),
        )
        .order_by(table.c.id)
        .with_for_update(skip_locked=True)
    )
    return (
        update(table)
        .where(table.c.id.in_(mine.scalar_subquery()))
        .values(lease_until=bindparam("until"))
    )


_RENEW_FEEDS = _renewal(s.feeds)
_RENEW_DELIVERIES = _renewal(s.deliveries)


def renew(
    engine: Engine, owner: str, *, feeds: list[int], deliveries: list[int], until: float
) -> tuple[int, int]:
    """Extend this owner's leases on `feeds` and `deliveries` to `until`; how many held."""
    renewed = [0, 0]
    with write_tx(engine) as conn:
        for i, (statement, ids) in enumerate(
            ((_RENEW_FEEDS, feeds), (_RENEW_DELIVERIES, deliveries))
        ):
            for start in range(0, len(ids), 500):  # bounded IN lists
                chunk = ids[start : start + 500]
                res = conn.execute(statement, {"ids": chunk, "owner": owner, "until": until})  # type: ignore[call-overload]
                renewed[i] += int(res.rowcount)
    return renewed[0], renewed[1]


class Heartbeat:
    """Renews the leases of `held` every `every` seconds until `stop` is set."""

    def __init__(
        self,
        engine: Engine,
        owner: str,
        held: Held,
        *,
        term: Callable[[], float],
        every: Callable[[], float],
        clock: Callable[[], float],
    ) -> None:
        self.engine, self.owner, self.held = engine, owner, held
        self.term, self.every, self.clock = term, every, clock
        self.beats = 0  # renewals done, for tests

    async def beat(self) -> None:
        """One renewal of everything in flight now."""
        feeds, deliveries = sorted(self.held.feeds), sorted(self.held.deliveries)
        if not feeds and not deliveries:
            return
        until = self.clock() + self.term()
        kept_feeds, kept_deliveries = await asyncio.to_thread(
            renew, self.engine, self.owner, feeds=feeds, deliveries=deliveries, until=until
        )
        self.beats += 1
        # Work that finished meanwhile is no longer leased; what is left was taken over.
        lost = len(set(feeds) & self.held.feeds) - kept_feeds
        lost += len(set(deliveries) & self.held.deliveries) - kept_deliveries
        if lost > 0:  # approximate: a poll may have committed while the renewal ran
            log.debug("heartbeat: %d leases in flight were no longer this node's", lost)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.beat()
            except Exception:
                log.exception("heartbeat: could not renew leases (retrying in %g s)", self.every())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every())
