"""The errors a user can act on, one hierarchy for the whole package.

Every stage raises a subclass of `MonitorError`; the pipeline records the failure of a feed in
one place and the daemon keeps running. `kind` is a short stable word stored with a feed's
health and shown by `monitor status`.
"""

from __future__ import annotations


class MonitorError(Exception):
    """Base class of every error the monitor raises on purpose."""

    kind: str = "error"


class ConfigError(MonitorError):
    """A config file is invalid. `problems` holds one `file:line:col: message` string each."""

    kind = "config"

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class FetchError(MonitorError):
    """A URL could not be fetched. `retry_after` is set when the server said when to come back."""

    kind = "fetch"

    def __init__(self, url: str, message: str, *, retry_after: float | None = None) -> None:
        self.url = url
        self.retry_after = retry_after
        super().__init__(f"{url}: {message}")


class FeedError(MonitorError):
    """Fetched bytes are not a usable feed (not XML, not a feed, broken beyond recovery)."""

    kind = "feed"


class ExtractError(MonitorError):
    """An article page could not be turned into text."""

    kind = "extract"


class DeliveryError(MonitorError):
    """A channel did not accept a message. `retry_after` honours 429/503 Retry-After.

    `permanent` marks failures that no retry can fix (a 4xx other than 408/429, a rejected
    recipient); the outbox still records them and they can be replayed by hand.
    """

    kind = "delivery"

    def __init__(
        self, message: str, *, retry_after: float | None = None, permanent: bool = False
    ) -> None:
        self.retry_after = retry_after
        self.permanent = permanent
        super().__init__(message)


class UnknownAlert(MonitorError):
    """A verdict (or another action) names an alert id the store does not hold."""

    kind = "unknown-alert"

    def __init__(self, alert_id: int) -> None:
        self.alert_id = alert_id
        super().__init__(f"no alert with id {alert_id}")
