"""Value types the config models share: durations, severities, the strict base model.

A module of its own (pydantic only) so the channel config models beside their channels
(`monitor/notify/*_config.py`) and `monitor.config` can both use them.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value: Any) -> timedelta:
    """`"10m"`, `"1.5h"`, `"30s"`, `"7d"`, or a number of seconds -> timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like 10m, 2h, 7d")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        total = 0.0
        parts = re.findall(r"\d+(?:\.\d+)?\s*(?:ms|s|m|h|d|w)?", value)
        if not parts or "".join(parts).replace(" ", "") != value.replace(" ", ""):
            raise ValueError(f"invalid duration {value!r}: use e.g. 30s, 10m, 2h, 7d, 1h30m")
        for part in parts:
            m = _DURATION_RE.match(part)
            assert m is not None
            total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        seconds = total
    else:
        raise ValueError("a duration is a number of seconds or a string like 10m, 2h, 7d")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return timedelta(seconds=seconds)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Severity = Literal["low", "medium", "high", "critical"]
SEVERITY_ORDER: dict[str, int] = {"low": 0, "medium": 1, "high": 2, "critical": 3}


class StrictModel(BaseModel):
    """A config section: unknown keys are errors; fields may be given by name or alias."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
