"""Notification channels: turn an `AlertMessage` into one delivery to one destination.

`build_channel` makes a `Channel` from a channel's config; the delivery worker calls
`Channel.send` and treats any `DeliveryError` as a failed attempt. `check_templates` validates
a channel's Jinja2 templates for `monitor check`.

The names below load on first use: the config models (`notify/*_config.py`, pydantic only)
are imported by `monitor.config`, which must not pull in an HTTP client or Jinja2 with them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitor.notify.base import Channel, SendReceipt
    from monitor.notify.message import AlertMessage
    from monitor.notify.ratelimit import TokenBucket
    from monitor.notify.registry import build_channel
    from monitor.notify.templates import check_templates
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

_HOME = {
    "AlertMessage": "monitor.notify.message",
    "Channel": "monitor.notify.base",
    "SendReceipt": "monitor.notify.base",
    "TokenBucket": "monitor.notify.ratelimit",
    "build_channel": "monitor.notify.registry",
    "check_templates": "monitor.notify.templates",
    "sign": "monitor.notify.webhook",
    "webhook_payload": "monitor.notify.webhook",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
