"""Logging for every command: level, format (`text` or `json`), quiet third-party loggers, and
the redaction of secrets (`monitor.secrets.RedactingFilter` on the handler, so it sees the
records of every logger)."""

from __future__ import annotations

import logging
import sys

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


def setup_logging(level: str) -> None:
    """Configure the root logger once per process: one stderr handler, redacting secrets."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_monitor", False)]:
        root.removeHandler(old)
    handler._monitor = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(getattr(logging, level, logging.INFO))
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
