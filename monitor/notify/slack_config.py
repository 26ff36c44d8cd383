"""The `type: slack` channel's config (pydantic only; the channel is `notify/slack.py`)."""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar, Literal

from pydantic import Field, SecretStr

from monitor.configtypes import Duration
from monitor.notify.channel_config import ChannelConfigBase


class SlackChannel(ChannelConfigBase):
    channel_module: ClassVar[str] = "monitor.notify.slack"

    type: Literal["slack"] = Field(
        description="`slack`: a Block Kit message to an incoming webhook."
    )
    webhook_url: SecretStr = Field(description="The Slack incoming-webhook URL (a secret).")
    timeout: Duration = Field(timedelta(seconds=15), description="Time allowed for one request.")
    allow_private: bool = Field(
        False, description="Allow a loopback or private address for the URL."
    )
