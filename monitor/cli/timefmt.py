"""The one time format of every `--format json` output: ISO 8601 in UTC, `Z` suffixed."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(ts: float | None) -> str | None:
    """An epoch timestamp as `2026-12-01T21:48:30Z` (None stays None)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
