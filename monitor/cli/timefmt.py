"""The one time format of every `--format json` output: ISO 8601 in UTC, `Z` suffixed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def iso(ts: float | None) -> str | None:
    """An epoch timestamp as `2026-12-01T21:48:30Z` (None stays None)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


#: Keys whose values are epoch timestamps in the JSON the commands print.
TIME_KEYS = frozenset({"failing_since"})


def iso_times(value: Any) -> Any:
    """`value` (parsed JSON) with every timestamp (a number under a `*_at` key or one of
    `TIME_KEYS`) as ISO 8601 UTC; everything else unchanged."""
    if isinstance(value, list):
        return [iso_times(v) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, v in value.items():
        is_time = key.endswith("_at") or key in TIME_KEYS
        if is_time and isinstance(v, int | float) and not isinstance(v, bool):
            out[key] = iso(float(v))
        else:
            out[key] = iso_times(v)
    return out
