"""The delivery worker: claims due deliveries from the outbox, sends them, records the outcome.

At least once to every channel: a delivery is marked sent only after its channel returned a
receipt. Failures are retried with capped exponential backoff and jitter, never sooner than a
429/503 Retry-After asked; a delivery past its attempt count or age (or refused permanently,
e.g. HTTP 404) becomes dead and stays visible and replayable. Digest channels hold their
deliveries until the channel's cron fires, then send one message for the period.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from monitor.config import SEVERITY_ORDER, DeliverySettings
from monitor.errors import DeliveryError
from monitor.notify.base import Channel
from monitor.notify.message import AlertMessage
from monitor.schedule import next_poll_after_failure
from monitor.secrets import redact
from monitor.stages import NO_STAGES, Stages
from monitor.store import Delivery, Outbox

log = logging.getLogger("monitor.delivery")


def digest_payload(
    channel: str, period: str, items: list[dict[str, Any]], now: float
) -> dict[str, Any]:
    """One digest message holding every alert collected for `channel` in `period`."""
    msgs = [AlertMessage.from_dict(i) for i in items]
    top = max((m.severity for m in msgs), key=_severity_rank, default="low")
    msg = AlertMessage(
        kind="digest",
        idempotency_key=f"digest:{channel}:{period}",
        alert_id=None,
        rule=None,
        severity=top,
        title=f"{len(msgs)} alert{'s' if len(msgs) != 1 else ''} ({period})",
        url=None,
        source=None,
        published=None,
        snippet="",
        highlights=[],
        story_id=None,
        sources=[],
        why=[],
        created_at=datetime.fromtimestamp(now, UTC),
        items=msgs,
    )
    return msg.to_dict()


def lanes(deliveries: list[Delivery], concurrency: int) -> list[list[Delivery]]:
    """The order a channel's claimed deliveries (oldest due first) are sent in: each lane one
    after another, lanes side by side. With `concurrency` 1, one lane: strictly in order.
    Otherwise one lane per story (its alert before its updates), and one for everything
    without a story (health notices, digests), lanes ordered by their oldest delivery."""
    if concurrency <= 1:
        return [deliveries] if deliveries else []
    by_lane: dict[int | None, list[Delivery]] = {}
    for d in deliveries:
        story = d.payload.get("story_id")
        by_lane.setdefault(story if isinstance(story, int) else None, []).append(d)
    return list(by_lane.values())


def _severity_rank(sev: str) -> int:
    # An unknown severity (a payload written by another version) ranks as medium.
    return SEVERITY_ORDER.get(sev, SEVERITY_ORDER["medium"])


class Deliverer:
    def __init__(
        self,
        outbox: Outbox,
        channels: dict[str, Channel],
        settings: DeliverySettings,
        *,
        owner: str,
        clock: Callable[[], float] = time.time,
        held: set[int] | None = None,
        lease_term: float | None = None,
    ) -> None:
        self.outbox = outbox
        self.channels = channels
        self.settings = settings
        self.owner = owner
        self.clock = clock
        # The deliveries being sent, whose claims the node's heartbeat renews every few
        # seconds; they are claimed for `lease_term` (without a heartbeat: `delivery.lease`).
        self.held = held if held is not None else set()
        self.lease_term = lease_term
        self.counts: Counter[str] = Counter()  # sent / failed / dead, for /metrics
        # Each attempt's outcome by delivery id, until /metrics takes it: sends run side by
        # side, so a before/after difference of `counts` would count a neighbour's too.
        self.outcome_of: dict[int, str] = {}
        self.stages: Stages = NO_STAGES  # /metrics installs its recorder here
        self.stopping = False

    def stop(self) -> None:
        """No more claims; rows claimed but not yet being sent are handed back (a send in
        flight finishes, within the daemon's `stop_grace`)."""
        self.stopping = True

    async def run_once(self) -> int:
        """Claim one batch of due deliveries and attempt each. Returns how many were tried."""
        if self.stopping:
            return 0
        now = self.clock()
        lease = self.settings.lease.total_seconds()
        batch = await asyncio.to_thread(
            self.outbox.claim,
            self.owner,
            limit=self.settings.batch,
            lease=self.lease_term if self.lease_term is not None else lease,
            now=now,
            channels=set(self.channels),
        )
        if not batch:
            return 0
        ids = {d.id for d in batch}
        self.held.update(ids)
        try:
            per_channel: dict[str, list[Delivery]] = defaultdict(list)
            for d in batch:
                per_channel[d.channel].append(d)
            # Channels run side by side. A send must start within the first half of
            # `delivery.lease`, leaving the other half for the send itself: rows a slow
            # receiver or a rate limit keeps waiting past that are handed back.
            start_by = now + lease / 2
            await asyncio.gather(
                *(self._send_all(ch, ds, start_by) for ch, ds in per_channel.items())
            )
        finally:
            self.held.difference_update(ids)
        return len(batch)

    async def drain(self, *, max_rounds: int = 1000) -> int:
        """Attempt every delivery that is due now, once each (for `monitor once`)."""
        total = 0
        for _ in range(max_rounds):
            n = await self.run_once()
            if n == 0:
                break
            total += n
        return total

    async def _send_all(
        self, channel_name: str, deliveries: list[Delivery], start_by: float
    ) -> None:
        """Send a channel's claimed deliveries, up to `delivery.concurrency` at once: each
        lane (`lanes`) in order, lanes side by side; the channel's rate limit holds for all."""
        channel = self.channels[channel_name]
        queue = deque(lanes(deliveries, self.settings.concurrency))

        async def worker() -> None:
            while queue:
                await self._send_lane(channel, queue.popleft(), start_by)

        await asyncio.gather(*(worker() for _ in range(min(self.settings.concurrency, len(queue)))))

    async def _send_lane(
        self, channel: Channel, deliveries: list[Delivery], start_by: float
    ) -> None:
        channel_name = channel.name
        for i, d in enumerate(deliveries):
            now = self.clock()
            if self.stopping:
                await asyncio.to_thread(self._release, deliveries[i:], now)
                return
            ready_at = now + channel.ready_in()
            if ready_at > start_by:
                rest = deliveries[i:]
                await asyncio.to_thread(self._release, rest, ready_at)
                log.info(
                    "channel %s: %d deliveries handed back, due again in %.1f s "
                    "(rate limit or slow receiver; lease half spent)",
                    channel_name,
                    len(rest),
                    ready_at - now,
                )
                return
            started = time.perf_counter()
            try:
                await self._send(channel, d)
            finally:
                seconds = time.perf_counter() - started
                self.stages.delivered(channel_name, seconds, self.outcome_of.pop(d.id, None))

    def _release(self, deliveries: list[Delivery], at: float) -> None:
        for d in deliveries:
            self.outbox.release(d.id, self.owner, at=at)

    async def _send(self, channel: Channel, d: Delivery) -> None:
        try:
            msg = AlertMessage.from_dict(d.payload)
        except (KeyError, TypeError, ValueError) as exc:
            await asyncio.to_thread(
                self.outbox.mark_failed,
                d.id,
                self.owner,
                error=f"unreadable stored message: {exc}",
                now=self.clock(),
                retry_at=None,
            )
            return
        try:
            receipt = await channel.send(msg)
        except DeliveryError as exc:
            await self._failed(d, str(exc), exc.retry_after, exc.permanent)
            return
        except Exception as exc:  # a channel bug must not stop the worker or lose the row
            log.exception("channel %s crashed sending delivery %d", channel.name, d.id)
            error = redact(f"internal error: {type(exc).__name__}: {exc}")
            await self._failed(d, error, None, False)
            return
        await asyncio.to_thread(
            self.outbox.mark_sent, d.id, self.owner, receipt=receipt.detail, now=self.clock()
        )
        self.counts["sent"] += 1
        self.outcome_of[d.id] = "sent"
        log.debug(  # INFO counts them in the periodic summary (`monitor.activity`)
            "sent %s %s via %s", d.kind, d.idempotency_key, channel.name, extra={"delivery": d.id}
        )

    async def _failed(
        self, d: Delivery, error: str, retry_after: float | None, permanent: bool
    ) -> None:
        now = self.clock()
        attempts = d.attempts + 1
        s = self.settings
        # Retry-After is obeyed as asked; otherwise capped exponential backoff with jitter.
        retry_at = next_poll_after_failure(
            now,
            failures=attempts,
            base=s.backoff_base.total_seconds(),
            cap=s.backoff_max.total_seconds(),
            retry_after=retry_after,
        )
        too_old = retry_at - d.created_at > s.give_up_after.total_seconds()
        if permanent or attempts >= s.max_attempts or too_old:
            why = (
                "refused permanently"
                if permanent
                else f"gave up after {attempts} attempts"
                if attempts >= s.max_attempts
                else f"gave up after {s.give_up_after}"
            )
            log.error(
                "delivery %d to %s is dead (%s): %s",
                d.id,
                d.channel,
                why,
                error,
                extra={"delivery": d.id},
            )
            self.counts["dead"] += 1
            self.outcome_of[d.id] = "dead"
            await asyncio.to_thread(
                self.outbox.mark_failed,
                d.id,
                self.owner,
                error=f"{error} ({why})",
                now=now,
                retry_at=None,
            )
            return
        self.counts["failed"] += 1
        self.outcome_of[d.id] = "failed"
        log.warning(
            "delivery %d to %s failed (attempt %d, retry in %.0f s): %s",
            d.id,
            d.channel,
            attempts,
            retry_at - now,
            error,
            extra={"delivery": d.id},
        )
        await asyncio.to_thread(
            self.outbox.mark_failed, d.id, self.owner, error=error, now=now, retry_at=retry_at
        )

    async def collect_digest(
        self, channel: str, period: str, *, until: float | None = None
    ) -> int | None:
        """Bundle the channel's alerts held up to `until` into the digest for `period`, once."""
        now = self.clock()
        return await asyncio.to_thread(
            self.outbox.collect_digest,
            channel,
            period=period,
            now=now,
            until=until,
            build=lambda items: digest_payload(channel, period, items, now),
        )
