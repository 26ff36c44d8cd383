"""Plain data passed between pipeline stages: parsed feeds, their entries, and articles.

Stages exchange these dataclasses, never ORM rows or library objects, so each stage can be
used (and tested) on its own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

#: The fields a rule can scope to, in the order `text:` joins them.
TEXT_FIELDS = ("title", "summary", "body")
FIELDS = ("title", "summary", "body", "author", "tags", "url", "feed")


@dataclass(frozen=True, slots=True)
class Enclosure:
    """A media file an entry carries (a podcast episode, an image): RSS `<enclosure>`, Atom
    `<link rel="enclosure">`, JSON Feed `attachments`. `url` is an http(s) URL."""

    url: str
    type: str = ""  # the MIME type the feed declares, as given (may be empty)
    length: int | None = None  # the size in bytes the feed declares

    def to_dict(self) -> dict[str, str | int | None]:
        return {"url": self.url, "type": self.type, "length": self.length}


@dataclass(slots=True)
class Entry:
    """One item of a feed, normalised to plain text."""

    title: str = ""
    summary: str = ""
    link: str | None = None
    guid: str | None = None
    published: datetime | None = None
    authors: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    enclosures: list[Enclosure] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The entry's identity within its feed: GUID, else link, else a hash of its text."""
        if self.guid:
            return self.guid
        if self.link:
            return self.link
        digest = hashlib.sha256(f"{self.title}\n{self.summary}".encode()).hexdigest()
        return f"sha256:{digest}"

    def article(self, feed: str) -> Article:
        """The article this entry of the feed named `feed` becomes (no body yet)."""
        return Article(
            feed=feed,
            guid=self.key,
            url=self.link or "",
            title=self.title,
            summary=self.summary,
            published=self.published,
            authors=list(self.authors),
            tags=list(self.tags),
            enclosures=list(self.enclosures),
        )


@dataclass(slots=True)
class ParsedFeed:
    """A parsed feed. `warning` is set when the XML was broken but entries were recovered."""

    title: str
    link: str | None
    entries: list[Entry] = field(default_factory=list)
    ttl_minutes: int | None = None
    skip_hours: frozenset[int] = frozenset()
    skip_days: frozenset[str] = frozenset()
    warning: str | None = None


@dataclass(slots=True)
class Article:
    """A new entry with its extracted body: what rules match and alerts describe."""

    feed: str
    guid: str
    url: str
    title: str = ""
    summary: str = ""
    body: str = ""
    published: datetime | None = None
    authors: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    canonical_url: str | None = None
    id: str | None = None
    enclosures: list[Enclosure] = field(default_factory=list)

    def fields(self) -> dict[str, str]:
        """The text of every rule field (see `FIELDS`)."""
        return {
            "title": self.title,
            "summary": self.summary,
            "body": self.body,
            "author": "\n".join(self.authors),
            "tags": "\n".join(self.tags),
            "url": self.url,
            "feed": self.feed,
        }


@dataclass(slots=True)
class FeedState:
    """A feed as the store last recorded it: a snapshot the pollers decide from."""

    id: int
    url: str
    fetch_url: str
    name: str
    allow_private: bool
    etag: str | None
    last_modified: str | None
    content_hash: str | None
    next_poll_at: float
    consecutive_failures: int
    failing_since: float | None
    last_error: str | None
    last_error_kind: str | None
    last_success_at: float | None
    last_attempt_at: float | None
    broken_reported: bool
    redirect_target: str | None
    redirect_count: int
    min_interval: float | None
    polls: int
    entries_total: int
    last_new_entry_at: float | None
    active: bool
    skip: str | None = None  # the feed's skipHours/skipDays, see `encode_skip`

    @property
    def health(self) -> str:
        """ok | failing | broken (reported broken after `fetch.broken_after` of failures)."""
        if self.consecutive_failures == 0:
            return "ok"
        return "broken" if self.broken_reported else "failing"
