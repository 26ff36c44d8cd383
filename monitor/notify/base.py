"""The channel contract, and the HTTP failure rules the HTTP channels share.

A `Channel` turns an `AlertMessage` into one delivery attempt. `send` returns a `SendReceipt`
only once the receiver has accepted the message; every other outcome raises `DeliveryError`,
with `retry_after` when the receiver said when to come back and `permanent` when no retry can
help. Retrying, backoff and dead letters belong to the outbox, not to channels.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from monitor import __version__
from monitor.errors import DeliveryError
from monitor.notify.message import AlertMessage
from monitor.notify.ratelimit import TokenBucket
from monitor.textsafety import clean_line

if TYPE_CHECKING:  # httpx is imported where a channel sends: `once` without channels skips it
    import httpx

USER_AGENT = f"news-monitor/{__version__} (+https://github.com/news-monitor/news-monitor)"

# Statuses that say "not now" rather than "never": timeout, conflict, too early, too many.
_TRANSIENT_4XX = frozenset({408, 409, 425, 429})


@dataclass
class SendReceipt:
    """What the receiver answered: `detail` (HTTP status, SMTP reply), a Slack `thread_ts`."""

    detail: str = ""
    thread_ts: str | None = None


#: Channel classes by kind (a channel config's `type`), filled as channel modules load: a
#: new channel is one module with one `Channel` subclass that names its `kind`.
REGISTRY: dict[str, type[Channel]] = {}


class Channel(ABC):
    """One configured destination. Subclasses implement `deliver`; callers use `send`."""

    #: The config `type` this class serves (registered in `REGISTRY` when it is defined).
    kind: ClassVar[str] = ""
    #: Whether it sends over HTTP, with the shared client `build_channel` passes as `client`.
    http: ClassVar[bool] = False

    name: str
    limiter: TokenBucket | None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            REGISTRY[cls.kind] = cls

    def __init__(self, name: str, *, limiter: TokenBucket | None = None) -> None:
        self.name = name
        self.limiter = limiter

    async def send(self, msg: AlertMessage) -> SendReceipt:
        """Deliver `msg`, waiting for the channel's rate limit first. Raises `DeliveryError`."""
        if self.limiter is not None:
            await self.limiter.acquire()
        return await self.deliver(msg)

    def ready_in(self) -> float:
        """Seconds before `send` could start without waiting for a rate limit (0.0: now)."""
        return self.limiter.delay() if self.limiter is not None else 0.0

    @abstractmethod
    async def deliver(self, msg: AlertMessage) -> SendReceipt:
        """One attempt, past the configured `rate_limit`. Raises `DeliveryError` on failure."""

    async def aclose(self) -> None:  # noqa: B027 - most channels hold nothing of their own
        """Release what the channel owns (a shared HTTP client is not its to close)."""


def status_error(channel: str, response: httpx.Response, detail: str = "") -> DeliveryError:
    """The `DeliveryError` for a non-success HTTP answer, classified by status."""
    from monitor.fetch import parse_retry_after  # here: aiohttp is not for `monitor check`

    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    text = detail or _short_body(response)
    message = f"channel {channel}: HTTP {status}" + (f": {text}" if text else "")
    if 300 <= status < 400:
        # A redirected webhook is a configuration problem: the URL has moved.
        return DeliveryError(message + " (redirect: update the URL)", permanent=True)
    permanent = 400 <= status < 500 and status not in _TRANSIENT_4XX
    return DeliveryError(message, retry_after=retry_after, permanent=permanent)


def transport_error(channel: str, exc: httpx.HTTPError) -> DeliveryError:
    """The `DeliveryError` for a request that got no HTTP answer at all."""
    import httpx

    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return DeliveryError(f"channel {channel}: invalid URL: {exc}", permanent=True)
    if isinstance(exc, httpx.TimeoutException):
        return DeliveryError(f"channel {channel}: timed out ({type(exc).__name__})")
    reason = str(exc) or type(exc).__name__
    return DeliveryError(f"channel {channel}: {reason}")


def _short_body(response: httpx.Response) -> str:
    import httpx

    try:
        text = response.text
    except (UnicodeDecodeError, httpx.ResponseNotRead):
        return ""
    text = " ".join(clean_line(text).split())  # a receiver's answer goes to logs and status
    return text[:200]
