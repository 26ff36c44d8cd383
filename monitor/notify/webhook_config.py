"""The `type: webhook` channel's config (pydantic only; the channel is `notify/webhook.py`)."""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar, Literal

from pydantic import Field, SecretStr

from monitor.configtypes import Duration
from monitor.notify.channel_config import ChannelConfigBase


class WebhookChannel(ChannelConfigBase):
    channel_module: ClassVar[str] = "monitor.notify.webhook"

    type: Literal["webhook"] = Field(description="`webhook`: a JSON POST per message.")
    url: SecretStr = Field(description="The receiver's URL (a secret: write it as `${VAR}`).")
    secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 key: requests carry X-Monitor-Timestamp and -Signature."
    )
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Extra request headers (secrets)."
    )
    timeout: Duration = Field(timedelta(seconds=15), description="Time allowed for one request.")
    allow_private: bool = Field(
        False, description="Allow a loopback or private address for the URL."
    )
