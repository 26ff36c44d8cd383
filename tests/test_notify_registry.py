"""Channels come from a registry of kind -> class: a new channel is one `Channel` subclass."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from monitor.notify import AlertMessage, Channel, SendReceipt, build_channel
from monitor.notify.base import REGISTRY
from monitor.notify.channel_config import CHANNEL_CONFIGS
from monitor.notify.registry import channel_class


def test_every_configurable_channel_type_is_registered() -> None:
    assert {"console", "webhook", "slack", "email", "apprise"} <= set(CHANNEL_CONFIGS)
    for kind in ("console", "webhook", "slack", "email", "apprise"):
        cls = channel_class(kind)  # imports the channel's module on first use
        assert cls is not None and cls.kind == kind and REGISTRY[kind] is cls


async def test_a_new_channel_is_one_subclass_that_names_its_kind() -> None:
    class Pager(Channel):
        kind = "pager-test"

        def __init__(self, name: str, config: Any, *, limiter: Any = None) -> None:
            super().__init__(name, limiter=limiter)
            self.config = config

        async def deliver(self, msg: AlertMessage) -> SendReceipt:
            return SendReceipt("paged")

    config = SimpleNamespace(type="pager-test", rate_limit=None)
    async with httpx.AsyncClient() as client:
        channel = build_channel("oncall", config, client=client)  # type: ignore[arg-type]
    assert isinstance(channel, Pager) and channel.name == "oncall" and channel.config is config
    del REGISTRY["pager-test"]


async def test_an_unknown_channel_type_is_refused() -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(TypeError, match="unknown channel type 'nope'"):
            build_channel("x", SimpleNamespace(type="nope", rate_limit=None), client=client)  # type: ignore[arg-type]
