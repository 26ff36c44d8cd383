"""`build_channel`: the channel for a config entry, from the registry of kinds.

A kind's config model (registered in `channel_config.CHANNEL_CONFIGS`) names the module of
its channel class; that module is imported the first time a channel of the kind is built, and
defining the class registers it in `base.REGISTRY`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from monitor.notify.base import REGISTRY, Channel
from monitor.notify.channel_config import CHANNEL_CONFIGS
from monitor.notify.ratelimit import TokenBucket

if TYPE_CHECKING:
    import httpx

    from monitor.notify.templates import ChannelConfig  # Jinja2: imported by channels that render


def channel_class(kind: str) -> type[Channel] | None:
    """The channel class of `kind`, importing its module if it is not loaded yet."""
    cls = REGISTRY.get(kind)
    model = CHANNEL_CONFIGS.get(kind)
    if cls is None and model is not None:
        importlib.import_module(model.channel_module)
        cls = REGISTRY.get(kind)
    return cls


def build_channel(name: str, config: ChannelConfig, *, client: httpx.AsyncClient) -> Channel:
    """The channel for a config entry, by its `type` (see `base.REGISTRY`). `client` is shared
    and stays owned by the caller."""
    kind = str(getattr(config, "type", ""))
    cls = channel_class(kind)
    if cls is None:
        raise TypeError(f"unknown channel type {kind!r}")
    limiter = TokenBucket.from_spec(config.rate_limit) if config.rate_limit else None
    extra: dict[str, Any] = {"client": client} if cls.http else {}
    # Each channel class takes its own config model: the registry cannot type that for mypy.
    factory: Any = cls
    channel: Channel = factory(name, config, limiter=limiter, **extra)
    return channel
