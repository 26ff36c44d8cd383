"""Secrets: every value the config loader substituted for a `${VAR}`, and their redaction.

The loader records each value it took from the environment (`register`). From then on
`redact(text)` replaces any recorded value found in `text` by its `${VAR}` placeholder, and
`expand(text)` turns placeholders back into values. Text that is shown or stored (log lines,
error messages, a feed's URL in the database and in `monitor status`) is the redacted form; only
the request that needs the secret (a feed's fetch) uses the expanded one.

A value is recognised also in the escaped spellings error messages use for it (Python `repr`
of the string and of its bytes, JSON, percent-encoding), so an illegal header value built from a
secret is not echoed back either. Values shorter than `MIN_LENGTH` characters are not recorded:
they would mask unrelated text and cannot be a secret worth the name.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
from urllib.parse import quote

#: Shorter substituted values are not treated as secrets (see the module docstring).
MIN_LENGTH = 4

_PLACEHOLDER_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _spellings(value: str) -> set[str]:
    """The ways `value` can appear in text an error message or log line was built from."""
    forms = {
        value,
        repr(value)[1:-1],
        json.dumps(value)[1:-1],
        quote(value, safe=""),
        quote(value, safe="/:@"),
    }
    with contextlib.suppress(UnicodeEncodeError):  # a lone surrogate from the environment
        forms.add(repr(value.encode("utf-8"))[2:-1])
    return {f for f in forms if len(f) >= MIN_LENGTH}


class SecretRegistry:
    """The process's known secret values. Thread-safe; values are only ever added (a reload
    that drops a secret keeps masking the old value, which is harmless)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, str] = {}  # value -> variable name (the first to have it)
        self._latest: dict[str, str] = {}  # variable name -> its latest value (for expand)
        self._spelled: list[tuple[str, str]] = []  # (spelling, placeholder), longest first

    def register(self, var: str, value: str) -> None:
        """Record that `${var}` was substituted by `value`."""
        if len(value) < MIN_LENGTH:
            return
        with self._lock:
            self._latest[var] = value  # a reload with a rotated token fetches with the new one
            if value in self._values:
                return
            self._values[value] = var
            placeholder = f"${{{var}}}"
            spelled = dict(self._spelled)
            for form in _spellings(value):
                spelled.setdefault(form, placeholder)
            self._spelled = sorted(spelled.items(), key=lambda kv: -len(kv[0]))

    def redact(self, text: str) -> str:
        """`text` with every known secret value replaced by its `${VAR}` placeholder."""
        for form, placeholder in self._spelled:
            if form in text:
                text = text.replace(form, placeholder)
        return text

    def expand(self, text: str) -> str:
        """`text` with each `${VAR}` placeholder of a known secret replaced by its value."""
        if "${" not in text:
            return text
        latest = self._latest

        def value_of(m: re.Match[str]) -> str:
            return latest.get(m.group(1), m.group(0))

        return _PLACEHOLDER_RE.sub(value_of, text)

    def __bool__(self) -> bool:
        return bool(self._values)

    def clear(self) -> None:
        """Forget every value (tests only)."""
        with self._lock:
            self._values.clear()
            self._latest.clear()
            self._spelled = []


#: The process-wide registry the config loader fills.
registry = SecretRegistry()


def register(var: str, value: str) -> None:
    registry.register(var, value)


def redact(text: str) -> str:
    """`text` with every secret the config loader substituted replaced by `${VAR}`."""
    return registry.redact(text)


def expand(text: str) -> str:
    """The inverse of `redact`: `${VAR}` placeholders of loaded secrets back to their values."""
    return registry.expand(text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the message, its arguments and any traceback of a record.

    Attach it to handlers (a filter on a logger is not consulted for records propagated from
    its children); `monitor.logs.setup_logging` does.
    """

    def __init__(self, secrets: SecretRegistry | None = None) -> None:
        super().__init__()
        self._secrets = registry if secrets is None else secrets
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self._secrets
        if not secrets:
            return True
        record.msg = secrets.redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = secrets.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = secrets.redact(record.stack_info)
        for key in ("feed", "rule", "delivery"):
            value = getattr(record, key, None)
            if isinstance(value, str):
                setattr(record, key, secrets.redact(value))
        return True
