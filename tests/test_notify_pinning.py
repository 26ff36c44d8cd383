"""Webhook and Slack destinations are pinned: the address checked is the address connected to.

A rebinding name answers a public address to the first lookup and 127.0.0.1 to any later one.
Before pinning, the check saw the public address and httpx, resolving again, POSTed to the
loopback receiver. Now the POST goes to the checked public address, which this test refuses
before any packet leaves the machine (the connect spy), and the receiver sees nothing.
"""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import ipaddress
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from daemons import connect_spy
from receivers import SlackReceiver, WebhookReceiver

import monitor.notify.pinning
from monitor.config import SlackChannel as SlackConfig
from monitor.config import WebhookChannel as WebhookConfig
from monitor.errors import DeliveryError
from monitor.notify import build_channel
from monitor.notify.pinning import pin_destination
from monitor.notify.templates import sample_message

PUBLIC = "93.184.216.34"


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every TCP connect(2) the event loop makes in this test; one to a non-loopback address
    is refused unsent."""
    return connect_spy(monkeypatch)


@pytest.fixture
def rebinding(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """`hooks.example` resolves to a public address once, then to 127.0.0.1. Returns the
    names looked up."""
    lookups: list[str] = []
    real = asyncio.base_events.BaseEventLoop.getaddrinfo

    async def getaddrinfo(self: Any, host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        host = host.decode() if isinstance(host, bytes) else host  # anyio passes IDNA bytes
        if host != "hooks.example":
            return await real(self, host, port, *args, **kw)
        lookups.append(host)
        address = PUBLIC if len(lookups) == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 80)))]

    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "getaddrinfo", getaddrinfo)
    return lookups


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as c:
        yield c


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def slack() -> Iterator[SlackReceiver]:
    with SlackReceiver() as receiver:
        yield receiver


async def test_a_rebinding_name_does_not_get_the_webhook_post(
    hook: WebhookReceiver,
    client: httpx.AsyncClient,
    rebinding: list[str],
    connects: list[tuple[str, int]],
) -> None:
    url = f"http://hooks.example:{hook.port}/alerts"
    cfg = WebhookConfig.model_validate({"type": "webhook", "url": url, "timeout": 2})
    channel = build_channel("hook", cfg, client=client)
    with pytest.raises(DeliveryError):
        await channel.send(sample_message())
    assert rebinding == ["hooks.example"]  # resolved once, by the check
    assert connects == [(PUBLIC, hook.port)]  # the checked address, refused by the spy
    assert hook.requests == []


async def test_a_rebinding_name_does_not_get_the_slack_post(
    slack: SlackReceiver,
    client: httpx.AsyncClient,
    rebinding: list[str],
    connects: list[tuple[str, int]],
) -> None:
    url = f"http://hooks.example:{slack.port}/services/T/B/X"
    cfg = SlackConfig.model_validate({"type": "slack", "webhook_url": url, "timeout": 2})
    channel = build_channel("desk", cfg, client=client)
    with pytest.raises(DeliveryError):
        await channel.send(sample_message())
    assert rebinding == ["hooks.example"]
    assert connects == [(PUBLIC, slack.port)]
    assert slack.requests == []


async def test_the_pinned_post_keeps_the_host_name_in_its_host_header(
    hook: WebhookReceiver,
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    connects: list[tuple[str, int]],
) -> None:
    # `hooks.example` resolves to 127.0.0.1, which the guard is told to let through here.
    real = monitor.notify.pinning.blocked_reason

    async def getaddrinfo(self: Any, host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        assert host == "hooks.example", host  # an address literal is never resolved
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", int(port)))]

    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(
        monitor.notify.pinning,
        "blocked_reason",
        lambda ip: None if ip == ipaddress.ip_address("127.0.0.1") else real(ip),
    )
    url = f"http://hooks.example:{hook.port}/alerts?token=abc"
    cfg = WebhookConfig.model_validate({"type": "webhook", "url": url, "timeout": 2})
    await build_channel("hook", cfg, client=client).send(sample_message())
    [request] = hook.received
    assert request.headers["host"] == f"hooks.example:{hook.port}"
    assert request.path == "/alerts?token=abc"
    assert connects == [("127.0.0.1", hook.port)]


async def test_https_keeps_the_name_for_sni_and_the_certificate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def getaddrinfo(self: Any, host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2606:2800:220:1::1", port, 0, 0)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC, port)),
        ]

    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "getaddrinfo", getaddrinfo)
    target = await pin_destination(
        "desk", "https://user:pw@hooks.example/services/T/B/X?x=1", allow_private=False
    )
    assert target.url == "https://user:pw@[2606:2800:220:1::1]/services/T/B/X?x=1"
    assert target.headers == {"Host": "hooks.example"}
    assert target.extensions == {"sni_hostname": "hooks.example"}


async def test_a_name_with_one_private_address_among_public_ones_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def getaddrinfo(self: Any, host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC, port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port)),
        ]

    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "getaddrinfo", getaddrinfo)
    with pytest.raises(DeliveryError, match="cloud metadata address") as info:
        await pin_destination("hook", "https://hooks.example/SECRET", allow_private=False)
    assert info.value.permanent
    assert "SECRET" not in str(info.value)
