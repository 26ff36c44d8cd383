"""The apprise channel, through Apprise's json:// plugin to a loopback webhook receiver."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from receivers import Respond, WebhookReceiver

from monitor.config import AppriseChannel as AppriseConfig
from monitor.errors import DeliveryError
from monitor.notify import build_channel
from monitor.notify.templates import sample_message


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


async def send(urls: list[str], **extra: Any) -> None:
    config = AppriseConfig.model_validate({"type": "apprise", "urls": urls, **extra})
    async with httpx.AsyncClient() as client:
        await build_channel("apprise", config, client=client).send(sample_message())


def json_url(hook: WebhookReceiver) -> str:
    return f"json://127.0.0.1:{hook.port}/"


async def test_reaches_the_receiver_with_title_and_body(hook: WebhookReceiver) -> None:
    await send([json_url(hook)])
    [request] = hook.received
    body = request.json()
    assert body["title"] == "[HIGH] Drone attack on US base in Syria"
    assert "attacks-on-us-troops" in body["message"]


async def test_a_failing_service_raises(hook: WebhookReceiver) -> None:
    hook.script(Respond(500))
    with pytest.raises(DeliveryError) as info:
        await send([json_url(hook)])
    assert not info.value.permanent


async def test_an_invalid_url_is_permanent_and_not_echoed() -> None:
    with pytest.raises(DeliveryError) as info:
        await send(["nosuchscheme://user:hunter2@host/"])
    assert info.value.permanent
    assert "hunter2" not in str(info.value)


async def test_a_hanging_service_times_out_without_blocking_the_loop(
    hook: WebhookReceiver,
) -> None:
    hook.script(Respond(200, delay=0.8))
    started = time.monotonic()
    with pytest.raises(DeliveryError) as info:
        await send([json_url(hook)], timeout=0.2)
    assert "timed out" in str(info.value)
    assert time.monotonic() - started < 0.7


async def test_a_template_sets_the_body(hook: WebhookReceiver) -> None:
    await send([json_url(hook)], template="{{ severity_label }}: {{ title }}")
    assert hook.received[0].json()["message"] == "HIGH: Drone attack on US base in Syria"
