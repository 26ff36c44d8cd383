"""A channel kind that exists only in the tests: its config model and its class, one module.

Importing it registers `type: pager` with the config loader and the channel registry, as a
new channel module of the project would (see monitor/notify/channel_config.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from monitor.notify.base import Channel, SendReceipt
from monitor.notify.channel_config import ChannelConfigBase
from monitor.notify.message import AlertMessage
from monitor.notify.ratelimit import TokenBucket

#: What every pager channel received: (channel name, its label, the message).
PAGED: list[tuple[str, str, AlertMessage]] = []


class PagerConfig(ChannelConfigBase):
    type: Literal["pager"] = Field(description="`pager`: a test-only channel.")
    label: str = Field(description="A word the pager prefixes to what it records.")


class PagerChannel(Channel):
    kind = "pager"

    def __init__(
        self, name: str, config: PagerConfig, *, limiter: TokenBucket | None = None
    ) -> None:
        super().__init__(name, limiter=limiter)
        self.config = config

    async def deliver(self, msg: AlertMessage) -> SendReceipt:
        PAGED.append((self.name, self.config.label, msg))
        return SendReceipt(f"paged {self.config.label}")
