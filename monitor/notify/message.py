"""The message a channel sends: one alert, a story update, a source's health, or a digest.

`AlertMessage` is what the outbox stores (as JSON, via `to_dict`/`from_dict`) and what every
channel renders. It carries plain text only; each channel escapes and formats it for its medium.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast

Kind = Literal["alert", "story.updated", "source.broken", "source.recovered", "digest"]
KINDS: tuple[Kind, ...] = ("alert", "story.updated", "source.broken", "source.recovered", "digest")


@dataclass
class AlertMessage:
    """One message for one channel. `idempotency_key` is stable per (alert, channel)."""

    kind: Kind
    idempotency_key: str
    alert_id: int | None
    rule: str | None
    severity: str
    title: str
    url: str | None
    source: str | None
    published: datetime | None
    snippet: str
    highlights: list[tuple[int, int]]
    story_id: int | None
    sources: list[dict[str, str]]
    why: list[dict[str, Any]]
    created_at: datetime
    detail: str = ""
    items: list[AlertMessage] = field(default_factory=list)
    thread_ts: str | None = None
    enclosures: list[dict[str, Any]] = field(default_factory=list)  # url, type, length

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict; `from_dict` restores an equal message."""
        return {
            "kind": self.kind,
            "idempotency_key": self.idempotency_key,
            "alert_id": self.alert_id,
            "rule": self.rule,
            "severity": self.severity,
            "title": self.title,
            "url": self.url,
            "source": self.source,
            "published": _iso(self.published),
            "snippet": self.snippet,
            "highlights": [[start, end] for start, end in self.highlights],
            "story_id": self.story_id,
            "sources": [dict(s) for s in self.sources],
            "why": [dict(w) for w in self.why],
            "created_at": _iso(self.created_at),
            "detail": self.detail,
            "items": [item.to_dict() for item in self.items],
            "thread_ts": self.thread_ts,
            "enclosures": [dict(e) for e in self.enclosures],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AlertMessage:
        """Inverse of `to_dict`. Raises `ValueError` on a malformed record."""
        kind = d["kind"]
        if kind not in KINDS:
            raise ValueError(f"unknown message kind {kind!r}")
        created = _parse_dt(d["created_at"])
        if created is None:
            raise ValueError("created_at is required")
        return cls(
            kind=cast(Kind, kind),
            idempotency_key=str(d["idempotency_key"]),
            alert_id=d.get("alert_id"),
            rule=d.get("rule"),
            severity=str(d.get("severity", "medium")),
            title=str(d.get("title", "")),
            url=d.get("url"),
            source=d.get("source"),
            published=_parse_dt(d.get("published")),
            snippet=str(d.get("snippet", "")),
            highlights=[(int(s), int(e)) for s, e in d.get("highlights", [])],
            story_id=d.get("story_id"),
            sources=[dict(s) for s in d.get("sources", [])],
            why=[dict(w) for w in d.get("why", [])],
            created_at=created,
            detail=str(d.get("detail", "")),
            items=[cls.from_dict(i) for i in d.get("items", [])],
            thread_ts=d.get("thread_ts"),
            enclosures=[dict(e) for e in d.get("enclosures", [])],
        )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_dt(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def segments(text: str, spans: list[tuple[int, int]]) -> list[tuple[str, bool]]:
    """Split `text` into (piece, highlighted) runs; spans are clamped, sorted and merged.

    Spans come from the matcher and may overlap (two leaves hitting the same word) or run past
    a snippet that was cut after matching, so they are never trusted as given.
    """
    n = len(text)
    clean = sorted((max(0, s), min(n, e)) for s, e in spans if min(n, e) > max(0, s))
    merged: list[list[int]] = []
    for start, end in clean:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out: list[tuple[str, bool]] = []
    pos = 0
    for start, end in merged:
        if start > pos:
            out.append((text[pos:start], False))
        out.append((text[start:end], True))
        pos = end
    if pos < n:
        out.append((text[pos:], False))
    return out


def mark(text: str, spans: list[tuple[int, int]], before: str, after: str) -> str:
    """`text` with every highlighted run wrapped in `before` ... `after`."""
    pieces = segments(text, spans)
    return "".join(f"{before}{piece}{after}" if hot else piece for piece, hot in pieces)


def truncate(text: str, limit: int, ellipsis: str = "…") -> str:
    """Cut `text` to at most `limit` characters, ending in an ellipsis when cut."""
    if len(text) <= limit:
        return text
    if limit <= len(ellipsis):
        return ellipsis[:limit]
    return text[: limit - len(ellipsis)].rstrip() + ellipsis
