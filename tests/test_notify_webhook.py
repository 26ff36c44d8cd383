"""The webhook channel against a real loopback receiver: payload, headers, failure classes."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from receivers import Drop, Respond, WebhookReceiver, free_port

from monitor.config import WebhookChannel as WebhookConfig
from monitor.errors import DeliveryError
from monitor.notify import AlertMessage, build_channel, sign, webhook_payload
from monitor.notify.templates import sample_digest, sample_message
from monitor.notify.webhook import verify

SECRET = "s3cret-for-tests"


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


def config(url: str, **extra: Any) -> WebhookConfig:
    return WebhookConfig.model_validate(
        {"type": "webhook", "url": url, "allow_private": True, "timeout": 2, **extra}
    )


async def send(
    url: str, client: httpx.AsyncClient, msg: AlertMessage | None = None, **extra: Any
) -> None:
    channel = build_channel("hook", config(url, **extra), client=client)
    await channel.send(msg or sample_message())


async def test_posts_the_versioned_json_payload(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    msg = sample_message()
    await send(hook.url, client, msg)
    [request] = hook.received
    body = request.json()
    assert request.headers["content-type"] == "application/json"
    assert body == webhook_payload(msg)
    assert body["version"] == "1"
    assert body["title"] == msg.title
    assert body["highlights"][0] == {"start": 0, "end": 9, "text": "US forces"}


async def test_sends_the_idempotency_key_and_user_agent(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    await send(hook.url, client, replace(sample_message(), idempotency_key="alert-7:hook"))
    [request] = hook.received
    assert request.headers["idempotency-key"] == "alert-7:hook"
    assert request.headers["user-agent"].startswith("news-monitor/")


async def test_signature_verifies_over_timestamp_and_exact_body(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    await send(hook.url, client, secret=SECRET)
    [request] = hook.received
    timestamp = request.headers["x-monitor-timestamp"]
    expected = hmac.new(
        SECRET.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256
    ).hexdigest()
    assert request.headers["x-monitor-signature"] == f"v1={expected}"
    assert verify(SECRET.encode(), timestamp, request.body, request.headers["x-monitor-signature"])
    assert not verify(
        SECRET.encode(), timestamp, request.body + b" ", request.headers["x-monitor-signature"]
    )


def test_sign_is_hmac_sha256_of_timestamp_dot_body() -> None:
    digest = hmac.new(b"k", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign(b"k", "1700000000", b"{}") == digest


def test_verify_rejects_a_stale_timestamp() -> None:
    header = "v1=" + sign(b"k", "1000", b"x")
    assert verify(b"k", "1000", b"x", header, now=1100)
    assert not verify(b"k", "1000", b"x", header, now=1000 + 301)


async def test_custom_headers_are_sent_but_cannot_replace_the_idempotency_key(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    headers = {"Authorization": "Bearer t0k", "Idempotency-Key": "forged"}
    await send(hook.url, client, headers=headers)
    [request] = hook.received
    assert request.headers["authorization"] == "Bearer t0k"
    assert request.headers["idempotency-key"] == sample_message().idempotency_key


async def test_a_json_template_is_sent_as_json(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    template = '{"text": {{ title | tojson }}, "sev": "{{ severity }}"}'
    await send(hook.url, client, template=template)
    [request] = hook.received
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {"text": sample_message().title, "sev": "high"}


async def test_a_text_template_is_sent_as_plain_text(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    await send(hook.url, client, template="ALERT {{ title }}")
    [request] = hook.received
    assert request.headers["content-type"].startswith("text/plain")
    assert request.body.decode() == f"ALERT {sample_message().title}"


async def test_a_template_failing_at_render_time_is_a_permanent_error(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    with pytest.raises(DeliveryError) as info:
        await send(hook.url, client, template="{{ title.__class__.__mro__ }}")
    assert info.value.permanent
    assert hook.requests == []


async def test_digest_payload_carries_every_item(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    await send(hook.url, client, sample_digest())
    body = hook.received[0].json()
    assert body["kind"] == "digest"
    assert [item["title"] for item in body["items"]] == [i.title for i in sample_digest().items]


async def test_server_error_is_a_retryable_failure(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    hook.script(Respond(500, "boom"))
    with pytest.raises(DeliveryError) as info:
        await send(hook.url, client)
    assert not info.value.permanent
    assert info.value.retry_after is None
    assert "500" in str(info.value)


async def test_429_retry_after_seconds_is_honoured(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    hook.script(Respond(429, headers={"Retry-After": "7"}))
    with pytest.raises(DeliveryError) as info:
        await send(hook.url, client)
    assert info.value.retry_after == 7
    assert not info.value.permanent


async def test_503_retry_after_http_date_is_honoured(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    hook.script(Respond(503, headers={"Retry-After": when}))
    with pytest.raises(DeliveryError) as info:
        await send(hook.url, client)
    assert info.value.retry_after is not None
    assert 110 <= info.value.retry_after <= 120


async def test_404_is_permanent(hook: WebhookReceiver, client: httpx.AsyncClient) -> None:
    hook.script(Respond(404))
    with pytest.raises(DeliveryError) as info:
        await send(hook.url, client)
    assert info.value.permanent


@pytest.mark.parametrize("status", [408, 409, 425])
async def test_transient_4xx_statuses_are_retryable(
    status: int, hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    hook.script(Respond(status))
    with pytest.raises(DeliveryError) as info:
        await send(hook.url, client)
    assert not info.value.permanent


async def test_a_redirect_is_not_followed_and_is_permanent(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    hook.script(Respond(301, headers={"Location": "http://127.0.0.1:1/elsewhere"}))
    with pytest.raises(DeliveryError) as info:
        await send(hook.url, client)
    assert info.value.permanent
    assert len(hook.requests) == 1


async def test_a_configured_rate_limit_spaces_sends(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    channel = build_channel("hook", config(hook.url, rate_limit="2/s"), client=client)
    started = time.monotonic()
    for _ in range(3):
        await channel.send(sample_message())
    assert time.monotonic() - started >= 0.45
    assert len(hook.received) == 3


async def test_connection_refused_is_a_retryable_failure(client: httpx.AsyncClient) -> None:
    with pytest.raises(DeliveryError) as info:
        await send(f"http://127.0.0.1:{free_port()}/", client)
    assert not info.value.permanent


async def test_a_dropped_connection_is_a_retryable_failure(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    hook.script(Drop())
    with pytest.raises(DeliveryError) as info:
        await send(hook.url, client)
    assert not info.value.permanent
    assert hook.received == []


async def test_a_slow_receiver_times_out(hook: WebhookReceiver, client: httpx.AsyncClient) -> None:
    hook.script(Respond(200, delay=1.0))
    with pytest.raises(DeliveryError) as info:
        await send(hook.url, client, timeout=0.2)
    assert "timed out" in str(info.value)


async def test_private_destinations_are_refused_unless_allowed(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    channel = build_channel("hook", config(hook.url, allow_private=False), client=client)
    with pytest.raises(DeliveryError) as info:
        await channel.send(sample_message())
    assert info.value.permanent
    assert "allow_private" in str(info.value)
    assert hook.requests == []


async def test_error_messages_do_not_reveal_the_url(client: httpx.AsyncClient) -> None:
    url = f"http://127.0.0.1:{free_port()}/hooks/SECRET-TOKEN"
    with pytest.raises(DeliveryError) as info:
        await send(url, client)
    assert "SECRET-TOKEN" not in str(info.value)


def test_payload_is_json_serialisable_for_every_kind() -> None:
    for kind in ("alert", "story.updated", "source.broken", "source.recovered"):
        msg = replace(sample_message(), kind=kind)  # type: ignore[arg-type]
        assert json.loads(json.dumps(webhook_payload(msg)))["kind"] == kind
