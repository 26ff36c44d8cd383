"""Notification channels: turn an `AlertMessage` into one delivery to one destination.

`build_channel` makes a `Channel` from a channel's config; the delivery worker calls
`Channel.send` and treats any `DeliveryError` as a failed attempt. `check_templates` validates
a channel's Jinja2 templates for `monitor check`.
"""

from __future__ import annotations

import httpx

from monitor import config as cfg
from monitor.notify.apprise import AppriseChannel
from monitor.notify.base import Channel, SendReceipt
from monitor.notify.console import ConsoleChannel
from monitor.notify.email import EmailChannel
from monitor.notify.message import AlertMessage
from monitor.notify.ratelimit import TokenBucket
from monitor.notify.slack import SlackChannel
from monitor.notify.templates import ChannelConfig, check_templates
from monitor.notify.webhook import WebhookChannel, sign, webhook_payload

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
    """The channel for a config entry. `client` is shared and stays owned by the caller."""
    limiter = TokenBucket.from_spec(config.rate_limit) if config.rate_limit else None
    if isinstance(config, cfg.ConsoleChannel):
        return ConsoleChannel(name, config, limiter=limiter)
    if isinstance(config, cfg.WebhookChannel):
        return WebhookChannel(name, config, client=client, limiter=limiter)
    if isinstance(config, cfg.SlackChannel):
        return SlackChannel(name, config, client=client, limiter=limiter)
    if isinstance(config, cfg.EmailChannel):
        return EmailChannel(name, config, limiter=limiter)
    if isinstance(config, cfg.AppriseChannel):
        return AppriseChannel(name, config, limiter=limiter)
    raise TypeError(f"unknown channel config {type(config).__name__}")
