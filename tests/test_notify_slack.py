"""The Slack channel against a stand-in as strict as Slack: limits, rate, answers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from receivers import Respond, SlackReceiver

from monitor.config import SlackChannel as SlackConfig
from monitor.errors import DeliveryError
from monitor.notify import AlertMessage, build_channel
from monitor.notify.slack import slack_payload, snippet_mrkdwn
from monitor.notify.templates import sample_message

#: How much sooner than a second after the previous message the stand-in still takes one. The
#: stand-in stamps a message when its thread has read it, which under a loaded CPU (CI runs
#: daemons beside these tests) lags the channel's send by a varying tens of milliseconds, so
#: two sends a second apart could arrive 0.95 s apart and get a 429. A limiter that sends
#: back to back (milliseconds apart) or at two a second is still refused, and the
#: one-per-second test also times the sends on the channel's side.
ARRIVAL_JITTER = 0.4


@pytest.fixture
def slack() -> Iterator[SlackReceiver]:
    with SlackReceiver(tolerance=ARRIVAL_JITTER) as receiver:
        yield receiver


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


def channel(url: str, client: httpx.AsyncClient, **extra: Any) -> Any:
    config = SlackConfig.model_validate(
        {"type": "slack", "webhook_url": url, "allow_private": True, "timeout": 2, **extra}
    )
    return build_channel("desk", config, client=client)


def long_alert(i: int) -> AlertMessage:
    snippet = ("Rockets & mortars <struck> the base; " * 40) + f"item {i}"
    return replace(
        sample_message(),
        idempotency_key=f"a{i}:desk",
        alert_id=i,
        title=f"Alert {i}: " + "a very long headline about attacks on US troops " * 8,
        url=f"https://news.example.org/{i}?a=1&b=<2>",
        snippet=snippet,
        highlights=[(0, 7), (len(snippet) - 6, len(snippet))],
    )


async def test_an_alert_is_accepted_by_the_stand_in(
    slack: SlackReceiver, client: httpx.AsyncClient
) -> None:
    receipt = await channel(slack.url, client).send(sample_message())
    assert receipt.detail == "HTTP 200 ok"
    [request] = slack.received
    assert request.json()["text"].startswith("[HIGH] Drone attack")


async def test_a_digest_of_200_long_alerts_fits_slacks_limits(
    slack: SlackReceiver, client: httpx.AsyncClient
) -> None:
    items = [long_alert(i) for i in range(200)]
    digest = replace(sample_message(), kind="digest", rule=None, items=items)
    await channel(slack.url, client).send(digest)
    assert slack.rejected == []
    blocks = slack.received[0].json()["blocks"]
    assert len(blocks) <= 50
    last = blocks[-1]["elements"][0]["text"]
    shown = sum(b["text"]["text"].count("*<https://") for b in blocks if b["type"] == "section")
    assert last == f"…and {200 - shown} more alerts"
    assert 0 < shown < 200


async def test_a_long_single_alert_is_truncated_not_rejected(
    slack: SlackReceiver, client: httpx.AsyncClient
) -> None:
    msg = replace(long_alert(1), snippet="word " * 5000, highlights=[(0, 4)])
    await channel(slack.url, client).send(msg)
    assert slack.rejected == []
    header = slack.received[0].json()["blocks"][0]["text"]["text"]
    assert len(header) == 150
    assert header.endswith("…")


async def test_five_back_to_back_messages_respect_one_per_second(
    slack: SlackReceiver, client: httpx.AsyncClient
) -> None:
    desk = channel(slack.url, client)
    started = time.monotonic()
    for i in range(5):
        await desk.send(replace(sample_message(), idempotency_key=f"k{i}"))
    assert len(slack.received) == 5
    assert slack.rejected == []
    # Five sends from a bucket of one token a second: at least four seconds on the channel's
    # side, whatever the delays (they only make it slower).
    assert time.monotonic() - started >= 3.9


async def test_channels_on_the_same_webhook_share_one_rate_limit(
    slack: SlackReceiver, client: httpx.AsyncClient
) -> None:
    first, second = channel(slack.url, client), channel(slack.url, client)
    await first.send(sample_message())
    await second.send(sample_message())
    assert slack.rejected == []
    assert len(slack.received) == 2


async def test_429_raises_with_retry_after_and_pauses_the_webhook(
    slack: SlackReceiver, client: httpx.AsyncClient
) -> None:
    desk = channel(slack.url, client)
    slack.script(Respond(429, "rate_limited", {"Retry-After": "30"}))
    with pytest.raises(DeliveryError) as info:
        await desk.send(sample_message())
    assert info.value.retry_after == 30
    assert desk.bucket.try_acquire() > 25


async def test_a_200_without_ok_is_a_failure(
    slack: SlackReceiver, client: httpx.AsyncClient
) -> None:
    slack.script(Respond(200, "something else"))
    with pytest.raises(DeliveryError):
        await channel(slack.url, client).send(sample_message())


async def test_invalid_blocks_is_permanent(slack: SlackReceiver, client: httpx.AsyncClient) -> None:
    slack.script(Respond(400, "invalid_blocks"))
    with pytest.raises(DeliveryError) as info:
        await channel(slack.url, client).send(sample_message())
    assert info.value.permanent
    assert "invalid_blocks" in str(info.value)


async def test_a_template_replaces_the_main_section(
    slack: SlackReceiver, client: httpx.AsyncClient
) -> None:
    await channel(slack.url, client, template="*{{ rule }}*: {{ title }}").send(sample_message())
    blocks = slack.received[0].json()["blocks"]
    assert blocks[1]["text"]["text"] == "*attacks-on-us-troops*: Drone attack on US base in Syria"


def test_mrkdwn_is_escaped_and_highlights_are_bold() -> None:
    text = "A <b> & B attack"
    start = text.index("attack")
    assert snippet_mrkdwn(text, [(start, start + 6)], 3000) == "A &lt;b&gt; &amp; B *attack*"


def test_escaped_snippet_stays_within_its_limit() -> None:
    text = "&" * 5000
    out = snippet_mrkdwn(text, [], 3000)
    assert len(out) <= 3000
    assert out.endswith("…")
    assert "&amp" in out


def test_thread_ts_is_passed_for_story_updates() -> None:
    msg = replace(sample_message(), kind="story.updated", thread_ts="1700000000.000100")
    payload = slack_payload(msg)
    assert payload["thread_ts"] == "1700000000.000100"
    assert payload["blocks"][0]["text"]["text"].startswith("Updated:")


def test_source_broken_names_the_source_and_the_error() -> None:
    msg = replace(sample_message(), kind="source.broken", detail="HTTP 404 for 3h")
    payload = slack_payload(msg)
    assert payload["blocks"][0]["text"]["text"] == "Source broken: Example News"
    assert "HTTP 404 for 3h" in payload["text"]


def test_the_stand_in_rejects_what_slack_rejects() -> None:
    stand_in = SlackReceiver()
    too_many = {"text": "t", "blocks": [{"type": "divider"}] * 51}
    long_header = {
        "text": "t",
        "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
    }
    long_section = {
        "text": "t",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "s" * 3001}}],
    }
    for payload in (too_many, long_header, long_section, {"blocks": []}):
        assert stand_in.violation(httpx.Request("POST", "/", json=payload).read()) is not None
