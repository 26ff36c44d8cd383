"""Notification channels: turn an `AlertMessage` into one delivery to one destination.

`build_channel` makes a `Channel` from a channel's config; the delivery worker calls
`Channel.send` and treats any `DeliveryError` as a failed attempt. `check_templates` validates
a channel's Jinja2 templates for `monitor check`.
"""

from __future__ import annotations

from typing import Any

import httpx

# Importing each channel module registers its class (see `base.REGISTRY`).
from monitor.notify import apprise, console, email, slack, webhook  # noqa: F401
from monitor.notify.base import REGISTRY, Channel, SendReceipt
from monitor.notify.message import AlertMessage
from monitor.notify.ratelimit import TokenBucket
from monitor.notify.templates import ChannelConfig, check_templates
from monitor.notify.webhook import sign, webhook_payload

__all__ = [
    "AlertMessage",
    "Channel",
    "SendReceipt",
    "TokenBucket",
    "build_channel",
    "check_templates",
    "sign",
    "webhook_payload",
]


def build_channel(name: str, config: ChannelConfig, *, client: httpx.AsyncClient) -> Channel:
    """The channel for a config entry, by its `type` (see `base.REGISTRY`). `client` is shared
    and stays owned by the caller."""
    cls = REGISTRY.get(config.type)
    if cls is None:
        raise TypeError(f"unknown channel type {config.type!r}")
    limiter = TokenBucket.from_spec(config.rate_limit) if config.rate_limit else None
    extra: dict[str, Any] = {"client": client} if cls.http else {}
    # Each channel class takes its own config model: the registry cannot type that for mypy.
    factory: Any = cls
    channel: Channel = factory(name, config, limiter=limiter, **extra)
    return channel
