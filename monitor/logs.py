"""Logging for every command: level, format (`text` or `json`), quiet third-party loggers, and
the redaction of secrets.

`setup_logging` installs one handler on the root logger, writing to standard error. Its
`monitor.secrets.RedactingFilter` sits on the handler, not on the logger: a logger's filters
are not consulted for records propagated from its children, a handler's see every record.

In `json` format each record is one line: `{"ts", "level", "logger", "message"}` plus `feed`,
`rule` and `delivery` when the call passed them (`log.info(..., extra={"feed": url})`), and
`exc` with the traceback of `log.exception`.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from monitor.secrets import RedactingFilter

#: Libraries whose INFO/DEBUG chatter says nothing about the monitor's own work.
NOISY = (
    "httpx",
    "httpcore",
    "apscheduler",
    "trafilatura",
    "htmldate",
    "courlan",
    "charset_normalizer",
    "alembic",
)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Record attributes a log call may set with `extra=` that the JSON lines carry.
CONTEXT_FIELDS = ("feed", "rule", "delivery")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside values are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                out[key] = value if isinstance(value, int | float | bool) else str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is when a record is emitted (not the one at set-up), so
    a test's or a caller's redirection of standard error is honoured."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging(level: str, fmt: str = "text") -> None:
    """Configure the root logger for this process: one stderr handler in `fmt` (`text` or
    `json`), redacting secrets. Calling it again replaces the handler it installed."""
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactingFilter())
    handler.set_name("monitor")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "monitor"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level, logging.INFO))
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
