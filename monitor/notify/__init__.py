"""Notification channels: turn an `AlertMessage` into one delivery to one destination.

`build_channel` makes a `Channel` from a channel's config; the delivery worker calls
`Channel.send` and treats any `DeliveryError` as a failed attempt. `check_templates` validates
a channel's Jinja2 templates for `monitor check`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from monitor.notify.base import REGISTRY, Channel

if TYPE_CHECKING:
    import httpx

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

_CHANNEL_MODULES = ("apprise", "console", "email", "slack", "webhook")
# Names loaded at first use: the channel modules bring httpx, Jinja2 and apprise, which a pass
# that delivers nothing (`monitor once` without channels, `monitor status`) never needs.
_LAZY = {
    "AlertMessage": "monitor.notify.message",
    "SendReceipt": "monitor.notify.base",
    "TokenBucket": "monitor.notify.ratelimit",
    "check_templates": "monitor.notify.templates",
    "sign": "monitor.notify.webhook",
    "webhook_payload": "monitor.notify.webhook",
}


def load_channels() -> None:
    """Import each channel module, which registers its class (see `base.REGISTRY`)."""
    for module in _CHANNEL_MODULES:
        importlib.import_module(f"monitor.notify.{module}")


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    load_channels()
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def build_channel(name: str, config: ChannelConfig, *, client: httpx.AsyncClient) -> Channel:
    """The channel for a config entry, by its `type` (see `base.REGISTRY`). `client` is shared
    and stays owned by the caller."""
    from monitor.notify.ratelimit import TokenBucket

    if config.type not in REGISTRY:  # the channel's own module (console: no httpx), or all
        if config.type in _CHANNEL_MODULES:
            importlib.import_module(f"monitor.notify.{config.type}")
        else:
            load_channels()
    cls = REGISTRY.get(config.type)
    if cls is None:
        raise TypeError(f"unknown channel type {config.type!r}")
    limiter = TokenBucket.from_spec(config.rate_limit) if config.rate_limit else None
    extra: dict[str, Any] = {"client": client} if cls.http else {}
    # Each channel class takes its own config model: the registry cannot type that for mypy.
    factory: Any = cls
    channel: Channel = factory(name, config, limiter=limiter, **extra)
    return channel
