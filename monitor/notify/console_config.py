"""The `type: console` channel's config (pydantic only; the channel is `notify/console.py`)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from monitor.notify.channel_config import ChannelConfigBase


class ConsoleChannel(ChannelConfigBase):
    channel_module: ClassVar[str] = "monitor.notify.console"

    type: Literal["console"] = Field(description="`console`: prints each message.")
    stream: Literal["stdout", "stderr"] = Field("stdout", description="Where to print.")
