"""Where the daemon's stages report what they did, for `/metrics`: a no-op unless it is served.

The pipeline and the deliverer call these at their stage boundaries
(`with self.stages.timed("fetch"): ...`, `self.stages.matched(hits)`, ...), so what is
measured is what the code says, at the depth it says, and a renamed method cannot silently
fall out of the metrics. `monitor.metrics.StageMetrics` records them; this base class, the
default, does nothing and imports nothing (prometheus_client is loaded only with the web
server), so a `monitor once` or a daemon without `web:` pays a method call per stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from monitor.store import CommitResult, PollResult, RuleHit

#: The timed stages: each is one histogram, `monitor_<stage>_seconds`.
Stage = Literal["fetch", "parse", "extract", "match"]


class _Nothing:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NOTHING = _Nothing()


class Stages:
    """Metrics off: every report is dropped."""

    def timed(self, stage: Stage) -> AbstractContextManager[None]:
        """A context manager around one `stage` of one feed or article."""
        return _NOTHING

    def matched(self, hits: Sequence[RuleHit]) -> None:
        """The rules one article matched (each hit has a route, so it can alert)."""

    def committed(self, poll: PollResult, results: Sequence[CommitResult]) -> None:
        """A poll's articles were committed with these results (in the same order)."""

    def delivered(self, channel: str, seconds: float, outcome: str | None) -> None:
        """One delivery attempt took `seconds`; `outcome` is sent, failed, dead, or None."""


#: The shared no-op.
NO_STAGES = Stages()
