"""The `type: email` channel's config (pydantic only; the channel is `notify/email.py`)."""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar, Literal

from pydantic import Field, SecretStr

from monitor.configtypes import Duration
from monitor.notify.channel_config import ChannelConfigBase


class EmailChannel(ChannelConfigBase):
    channel_module: ClassVar[str] = "monitor.notify.email"

    type: Literal["email"] = Field(
        description="`email`: a multipart text + HTML message over SMTP."
    )
    host: str = Field("localhost", description="SMTP server host.")
    port: int | None = Field(
        None, description="SMTP port (default: 587 for starttls, 465 for tls, 25 for none)."
    )
    security: Literal["starttls", "tls", "none"] = Field(
        "starttls",
        description="`starttls` requires STARTTLS, `tls` is TLS from the start, `none` is clear.",
    )
    username: str | None = Field(None, description="SMTP login name.")
    password: SecretStr | None = Field(None, description="SMTP password (a secret).")
    sender: str = Field(
        "news-monitor@localhost", alias="from", description="The From address (written `from:`)."
    )
    to: list[str] = Field(
        min_length=1, description="Recipients (the only recipients a message ever has)."
    )
    subject: str | None = Field(None, description="A Jinja2 template of the subject line.")
    timeout: Duration = Field(
        timedelta(seconds=30), description="Time allowed for one SMTP session."
    )
    validate_certs: bool = Field(True, description="Verify the server's TLS certificate.")
