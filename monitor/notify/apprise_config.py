"""The `type: apprise` channel's config (pydantic only; the channel is `notify/apprise.py`)."""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar, Literal

from pydantic import Field, SecretStr

from monitor.configtypes import Duration
from monitor.notify.channel_config import ChannelConfigBase


class AppriseChannel(ChannelConfigBase):
    channel_module: ClassVar[str] = "monitor.notify.apprise"

    type: Literal["apprise"] = Field(description="`apprise`: any service Apprise supports.")
    urls: list[SecretStr] = Field(
        min_length=1, description="Apprise URLs (secrets); every one must succeed."
    )
    timeout: Duration = Field(
        timedelta(seconds=30), description="Time allowed for sending to all URLs."
    )
