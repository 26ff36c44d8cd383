"""The console channel: one readable block per message on stdout or stderr.

The default channel, so a new user sees alerts at once. Highlights are bold when the stream is
a terminal and `**marked**` otherwise, so piped output stays plain text.
"""

from __future__ import annotations

import sys
from typing import TextIO

from monitor.errors import DeliveryError
from monitor.notify.base import Channel, SendReceipt
from monitor.notify.console_config import ConsoleChannel as ConsoleConfig
from monitor.notify.message import AlertMessage
from monitor.notify.ratelimit import TokenBucket

_RULE = "─" * 72


class ConsoleChannel(Channel):
    """Writes each message as a text block and flushes, so `monitor run | tee` shows it now."""

    kind = "console"

    def __init__(
        self,
        name: str,
        config: ConsoleConfig,
        *,
        stream: TextIO | None = None,
        limiter: TokenBucket | None = None,
    ) -> None:
        super().__init__(name, limiter=limiter)
        self.config = config
        self._stream = stream

    @property
    def stream(self) -> TextIO:
        # Looked up at send time so pytest's capsys and redirected stdio are honoured.
        if self._stream is not None:
            return self._stream
        return sys.stderr if self.config.stream == "stderr" else sys.stdout

    async def deliver(self, msg: AlertMessage) -> SendReceipt:
        # Jinja2 is loaded by the first message: a `once` pass that delivers nothing, with
        # only this default channel, never imports it.
        from monitor.notify import templates

        stream = self.stream
        tty = _isatty(stream)
        hl_open, hl_close = ("\x1b[1m", "\x1b[0m") if tty else ("**", "**")
        body = templates.render(
            "text",
            msg,
            source=self.config.template,
            default="message.txt.j2",
            hl_open=hl_open,
            hl_close=hl_close,
        )
        try:
            stream.write(f"{_RULE}\n{body.rstrip()}\n")
            stream.flush()
        except (OSError, ValueError) as exc:  # closed pipe or closed file
            raise DeliveryError(f"channel {self.name}: cannot write to the console: {exc}") from exc
        return SendReceipt(detail="written")


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
