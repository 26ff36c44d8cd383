"""`monitor notify test CHANNEL`: send a sample alert through a configured channel, for real.

The channel is built exactly as the daemon builds it (templates, rate limit, the SSRF check
of its URL, signing) and sent one sample alert. What the receiver answered is printed: the
HTTP status and the start of its body for webhook and Slack channels, the SMTP reply for
e-mail. Exit 0 when the receiver accepted it, 1 when it did not (the message says why).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from monitor.cli import EXIT_ERROR, EXIT_OK
from monitor.config import load_config
from monitor.errors import DeliveryError, MonitorError
from monitor.notify import build_channel
from monitor.notify.message import AlertMessage

_BODY_SHOWN = 300


class UnknownChannel(MonitorError):
    kind = "usage"


def sample_alert(channel: str, now: datetime | None = None) -> AlertMessage:
    """A recognisable test alert (its key is unique, so a receiver never dedups it away)."""
    now = now or datetime.now(UTC)
    title = "Test alert from monitor: delivery works"
    snippet = f"This is a test of the channel {channel!r}, sent by `monitor notify test`."
    return AlertMessage(
        kind="alert",
        idempotency_key=f"monitor-notify-test:{channel}:{time.time_ns()}",
        alert_id=None,
        rule="notify-test",
        severity="low",
        title=title,
        url="https://example.org/monitor/notify-test",
        source="monitor notify test",
        published=now,
        snippet=snippet,
        highlights=[(snippet.index("test"), snippet.index("test") + 4)],
        story_id=None,
        sources=[{"feed": "monitor notify test", "url": "https://example.org/monitor/notify-test"}],
        why=[],
        created_at=now,
    )


@dataclass
class Answers:
    """The HTTP answers the channel's requests got (recorded by an httpx event hook)."""

    seen: list[str] = field(default_factory=list)

    async def record(self, response: httpx.Response) -> None:
        await response.aread()
        body = " ".join(response.text.split())
        shown = body[:_BODY_SHOWN] + ("..." if len(body) > _BODY_SHOWN else "")
        self.seen.append(
            f"HTTP {response.status_code} {response.reason_phrase}"
            + (f": {shown}" if shown else "")
        )


async def send_test(path: str, channel: str) -> int:
    settings = load_config(path)
    config = settings.channels.get(channel)
    if config is None:
        names = ", ".join(sorted(settings.channels)) or "none are configured"
        raise UnknownChannel(f"no channel {channel!r} in {path} (channels: {names})")
    answers = Answers()
    async with httpx.AsyncClient(
        trust_env=False,
        follow_redirects=False,
        headers={"User-Agent": settings.fetch.user_agent_string},
        event_hooks={"response": [answers.record]},
    ) as client:
        ch = build_channel(channel, config, client=client)
        try:
            receipt = await ch.send(sample_alert(channel))
        except DeliveryError as exc:
            for answer in answers.seen:
                print(f"receiver answered: {answer}", file=sys.stderr)
            print(f"channel {channel}: not delivered: {exc}", file=sys.stderr)
            return EXIT_ERROR
        finally:
            await ch.aclose()
    for answer in answers.seen:
        print(f"receiver answered: {answer}")
    print(f"channel {channel}: test alert delivered ({receipt.detail})")
    return EXIT_OK


def cmd_notify_test(args: argparse.Namespace) -> int:
    return asyncio.run(send_test(args.config, args.channel))
