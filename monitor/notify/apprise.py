"""The apprise channel: the long tail of services (Telegram, Matrix, ntfy, ...) by URL.

Apprise's `notify` blocks (it is built on `requests`), so it runs in a worker thread under a
timeout and cannot stall the event loop. A timed-out call may still finish in its thread; the
delivery is then retried, which at-least-once allows.
"""

from __future__ import annotations

import asyncio

from monitor.errors import DeliveryError
from monitor.notify import templates
from monitor.notify.apprise_config import AppriseChannel as AppriseConfig
from monitor.notify.base import Channel, SendReceipt
from monitor.notify.message import AlertMessage
from monitor.notify.ratelimit import TokenBucket


class AppriseChannel(Channel):
    """Notifies every configured Apprise URL; all of them must succeed."""

    kind = "apprise"

    def __init__(
        self, name: str, config: AppriseConfig, *, limiter: TokenBucket | None = None
    ) -> None:
        super().__init__(name, limiter=limiter)
        self.config = config

    def _notify(self, title: str, body: str) -> None:
        # Imported on first use: only daemons with an apprise channel pay for its modules.
        import apprise

        client = apprise.Apprise()
        for index, url in enumerate(self.config.urls, start=1):
            # The URL holds credentials: name it by position only.
            if not client.add(url.get_secret_value()):
                raise DeliveryError(
                    f"channel {self.name}: URL #{index} is not a valid Apprise URL",
                    permanent=True,
                )
        ok = client.notify(body=body, title=title, body_format=apprise.NotifyFormat.TEXT)
        if not ok:
            raise DeliveryError(f"channel {self.name}: apprise reported a failed notification")

    async def deliver(self, msg: AlertMessage) -> SendReceipt:
        title = templates.render("text", msg, default="subject.txt.j2")
        body = templates.render("text", msg, source=self.config.template, default="message.txt.j2")
        timeout = self.config.timeout.total_seconds()
        try:
            await asyncio.wait_for(asyncio.to_thread(self._notify, title, body), timeout)
        except TimeoutError as exc:
            raise DeliveryError(
                f"channel {self.name}: apprise timed out after {timeout:g}s"
            ) from exc
        except DeliveryError:
            raise
        except Exception as exc:  # a plugin can raise anything; it is a failed attempt
            raise DeliveryError(f"channel {self.name}: apprise failed: {exc}") from exc
        return SendReceipt(detail=f"notified {len(self.config.urls)} URL(s)")
