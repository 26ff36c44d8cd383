"""Feed bytes -> `ParsedFeed`: normalised, plain-text, length-capped entries.

Owns everything between a fetched body and `monitor.models.Entry`: defusing the body before
feedparser sees it (inline DTDs stripped, bytes only, never a URL or a path), JSON Feed (which
feedparser 6.0 does not read), turning HTML fields into plain text, capping every field,
resolving links against the feed's URL, and explaining in one sentence why a body is not a feed.
Runs in a worker process (`monitor.workers`) because feedparser has no time limit of its own.
"""

from __future__ import annotations

import calendar
import io
import json
import re
import time
from datetime import UTC, datetime
from html import unescape
from itertools import repeat
from typing import Any
from urllib.parse import urljoin, urlsplit
from xml.sax import SAXParseException

import feedparser
import lxml.etree  # type: ignore[import-untyped]  # lxml ships no stubs
import lxml.html  # type: ignore[import-untyped]

from monitor.errors import FeedError
from monitor.models import Enclosure, Entry, ParsedFeed
from monitor.textsafety import clean_line, clean_url

__all__ = ["Entry", "ParsedFeed", "parse_feed"]

MAX_TITLE = 1_000
MAX_SUMMARY = 20_000
MAX_URL = 2_000
MAX_NAME = 200
MAX_LIST = 50
MAX_ENTRIES = 5_000
# HTML longer than this is cut before it is parsed into text: a summary needs no more.
_MAX_HTML = 200_000

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_HTML_TYPES = ("text/html", "application/xhtml+xml", "html", "xhtml")
_BLOCK_TAGS = frozenset(
    {"p", "br", "div", "li", "ul", "ol", "tr", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6"}
    | {"blockquote", "pre", "section", "article", "header", "footer", "dt", "dd", "figure"}
    | {"figcaption", "table", "hr"}
)
# feedparser asks xml.sax for these SAX drivers first, on every parse: by default
# "drv_libxml2", whose import fails after a search of sys.path each time (7 % of a parse of a
# 5 KB feed, measured in bench/). Pinned to the standard library's expat, which is what it
# falls back to anyway and what `strip_dtd` and the hostile-feed tests were written against.
feedparser.api.PREFERRED_XML_PARSERS = []
# Warnings feedparser raises on documents it nevertheless parsed correctly.
_BENIGN_BOZO = (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)


def parse_feed(body: bytes, *, url: str = "", content_type: str | None = None) -> ParsedFeed:
    """Parse RSS 0.9x/1.0/2.0, Atom or JSON Feed bytes. Raises `FeedError` saying why not."""
    data = _strip_leading_space(body)
    if not data:
        raise FeedError("not a feed: the body is empty")
    if data[:1] in (b"{", b"["):
        return _parse_json_feed(data, url)
    data = strip_dtd(data)
    parsed = _feedparser_parse(data, url, content_type)
    bozo = parsed.get("bozo_exception") if parsed.get("bozo") else None
    broken = _is_broken(bozo)
    base = url or None
    entries = [e for e in map(_entry, parsed.entries[:MAX_ENTRIES], repeat(base)) if _useful(e)]
    if not entries and (not parsed.version or (broken and not _only_entities(bozo))):
        raise FeedError(_why_not_a_feed(data, bozo if broken else None))
    feed = parsed.feed
    hours, days = _skip_schedule(data)
    return ParsedFeed(
        title=_text_field(feed, "title", MAX_TITLE),
        link=_link(feed.get("link"), base),
        entries=entries,
        ttl_minutes=_ttl(feed.get("ttl")),
        skip_hours=hours,
        skip_days=days,
        warning=_describe(bozo) if broken else None,
    )


def _feedparser_parse(data: bytes, url: str, content_type: str | None) -> Any:
    headers = {"content-type": content_type} if content_type else {}
    if url and not _ids_never_resolved(data):
        headers["content-location"] = url
    return feedparser.parse(
        io.BytesIO(data),
        response_headers=headers,
        sanitize_html=False,
        resolve_relative_uris=False,
    )


def _is_broken(bozo: object) -> bool:
    """True when feedparser's complaint is one that may mean the document was misread."""
    return bozo is not None and not isinstance(bozo, _BENIGN_BOZO)


# --------------------------------------------------------------------------- defusing


_DOCTYPE = re.compile(rb"<!DOCTYPE\b", re.IGNORECASE)
_SUBSET_END = re.compile(rb"\]\s*>")


def strip_dtd(data: bytes) -> bytes:
    """Remove an inline DTD subset (`<!DOCTYPE x [ ... ]>`) and any other `<!ENTITY`.

    feedparser re-inserts "safe" entity declarations and its fallback parser expands them
    without limit: one 30 KB entity referenced 3,000 times became a 90 MB title (research §1).
    Without declarations, references stay literal text and cost nothing.
    """
    match = _DOCTYPE.search(data, 0, 4096)
    if match is not None:
        start = match.end()
        close = data.find(b">", start)
        bracket = data.find(b"[", start)
        if bracket != -1 and (close == -1 or bracket < close):
            end = _SUBSET_END.search(data, bracket)
            stop = end.end() if end else len(data)
            data = data[: match.start()] + data[stop:]
    return data.replace(b"<!ENTITY", b"")


_GUID_TAG = re.compile(rb"<guid\b([^>]*)>", re.IGNORECASE)
_PERMALINK = re.compile(rb"\bispermalink\s*=\s*([\"'])(.*?)\1", re.IGNORECASE | re.DOTALL)
_OTHER_IDS = re.compile(rb"<id\b|:id\b|:guid\b|\babout\s*=", re.IGNORECASE)


def _ids_never_resolved(data: bytes) -> bool:
    """True when feedparser would leave every entry id as written even given a base URI.

    Given the feed's URL (Content-Location), feedparser resolves every link and every id
    that may be a link against it: a third of its time on a 10-item feed (bench/README.md).
    Links are resolved by `_link` anyway. Ids are the entries' identities in the stored
    seen-list, so they must stay as they were: feedparser resolves an Atom id, an RSS guid
    without isPermaLink and one with isPermaLink="true", and no other. So the base is left
    out only when every guid says isPermaLink other than "true" and there is no other kind
    of id (Atom or namespaced ids, RDF `about`): then no id is resolved either way.
    """
    if _OTHER_IDS.search(data):
        return False
    for attrs in _GUID_TAG.findall(data):
        permalink = _PERMALINK.search(attrs)
        if permalink is None or permalink.group(2) == b"true":
            return False
    return True


def _strip_leading_space(body: bytes) -> bytes:
    # Whitespace before `<?xml` makes expat fail ("XML declaration not at start of entity")
    # and feedparser fall back to its slower, looser parser; many real feeds have it.
    if body.startswith(b"\xef\xbb\xbf"):
        return b"\xef\xbb\xbf" + body[3:].lstrip()
    if body.startswith((b"\xff\xfe", b"\xfe\xff")):
        return body
    return body.lstrip()


def _useful(entry: Entry) -> bool:
    # Illegally nested markup makes feedparser emit phantom items with no field at all.
    return bool(entry.title or entry.link or entry.guid or entry.summary)


def _only_entities(bozo: object) -> bool:
    # HTML entities such as &nbsp; are undefined in XML, a common publisher mistake that the
    # fallback parser handles faithfully: a channel recovered this way is still a channel.
    return isinstance(bozo, SAXParseException) and bozo.getMessage().startswith("undefined entity")


def _why_not_a_feed(data: bytes, bozo: object) -> str:
    head = data[:2048].lower()
    if b"<html" in head or b"<!doctype html" in head or b"<body" in head:
        return "not a feed: looks like an HTML page"
    if bozo is not None:
        description = _describe(bozo)
        return description if description.startswith("invalid") else f"not a feed: {description}"
    return "not a feed: no entries and no feed element"


def _describe(bozo: object) -> str:
    if isinstance(bozo, SAXParseException):
        line, col = bozo.getLineNumber(), bozo.getColumnNumber()
        return f"invalid XML at line {line} col {col}: {bozo.getMessage()}"
    return str(bozo) or type(bozo).__name__


# --------------------------------------------------------------------------- fields


def html_to_text(value: str, limit: int) -> str:
    """Plain text of an HTML fragment: tags and scripts dropped, entities decoded, spaces
    collapsed, cut to `limit` characters."""
    value = value[:_MAX_HTML]
    if "<" not in value:
        return _clean(unescape(value), limit)
    try:
        root = lxml.html.fragment_fromstring(value, create_parent="div")
    except (lxml.etree.ParserError, ValueError):
        return _clean(unescape(re.sub(r"<[^>]*>", " ", value)), limit)
    for bad in root.xpath("//script|//style|//template"):
        bad.drop_tree()
    for el in root.iter():
        if isinstance(el.tag, str) and el.tag in _BLOCK_TAGS:
            el.tail = " " + (el.tail or "")
    return _clean(root.text_content(), limit)


def _clean(text: str, limit: int) -> str:
    # split/join: the same whitespace as `\s+` (str.isspace), about 4x faster than re.sub.
    line = " ".join(text.split())[:limit]
    # Every text field passes here: control characters and bidi overrides go (`textsafety`),
    # checked on the cut text (a scan of every character, so on as few as possible).
    cleaned = clean_line(line)
    return line if cleaned is line else " ".join(cleaned.split())


def _text_field(obj: Any, key: str, limit: int) -> str:
    # dict.get, not FeedParserDict.get: the latter answers "summary" with the content.
    value = dict.get(obj, key)
    if not isinstance(value, str) or not value:
        return ""
    detail = dict.get(obj, f"{key}_detail") or {}
    if str(detail.get("type", "")).lower() in _HTML_TYPES:
        return html_to_text(value, limit)
    return _clean(value[: limit * 4], limit)


def _link(value: object, base: str | None) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    link = value.strip()
    if base:
        try:
            link = urljoin(base, link)
        except ValueError:
            return None
    link = clean_url(link)  # a link is shown too: no raw control character in it
    if urlsplit(link).scheme not in ("http", "https") or len(link) > MAX_URL:
        return None
    return link


#: Enclosures kept per entry (a podcast item has one; some feeds list a dozen images).
MAX_ENCLOSURES = 10


def _enclosure(url: object, mime: object, length: object, base: str | None) -> Enclosure | None:
    """One enclosure as a feed declared it, or None when its URL is not http(s). The type and
    length are the feed's word (shown, never trusted): cleaned text, a non-negative integer."""
    link = _link(url, base)
    if link is None:
        return None
    kind = _clean(mime[: MAX_NAME * 4], MAX_NAME) if isinstance(mime, str) else ""
    size: int | None = None
    if isinstance(length, int) and not isinstance(length, bool):
        size = length
    elif isinstance(length, str) and length.strip().isdigit():
        size = int(length.strip())
    if size is not None and not 0 <= size < 2**63:
        size = None
    return Enclosure(url=link, type=kind, length=size)


def _enclosures(items: object, keys: tuple[str, str, str], base: str | None) -> list[Enclosure]:
    """The entry's enclosures (`keys`: the url, type and length keys), unique by URL."""
    out: list[Enclosure] = []
    if not isinstance(items, list):
        return out
    for item in items[: MAX_ENCLOSURES * 4]:
        if not isinstance(item, dict):
            continue
        enc = _enclosure(item.get(keys[0]), item.get(keys[1]), item.get(keys[2]), base)
        if enc is not None and all(e.url != enc.url for e in out):
            out.append(enc)
        if len(out) == MAX_ENCLOSURES:
            break
    return out


def _date(parsed: object) -> datetime | None:
    if not isinstance(parsed, time.struct_time):
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(parsed), UTC)
    except (OverflowError, ValueError, OSError):
        return None


def _entry(raw: Any, base: str | None) -> Entry:
    guid = raw.get("id")
    return Entry(
        title=_text_field(raw, "title", MAX_TITLE),
        summary=_entry_summary(raw),
        link=_link(raw.get("link"), base),
        guid=_clean(guid, MAX_URL) or None if isinstance(guid, str) else None,
        published=_date(dict.get(raw, "published_parsed"))
        or _date(dict.get(raw, "updated_parsed")),
        authors=_entry_authors(raw)[:MAX_LIST],
        tags=_entry_tags(raw)[:MAX_LIST],
        enclosures=_enclosures(raw.get("enclosures"), ("href", "type", "length"), base),
    )


def _entry_summary(raw: Any) -> str:
    """The entry's summary, else the text of its first non-empty content."""
    summary = _text_field(raw, "summary", MAX_SUMMARY)
    if not summary:
        for content in raw.get("content") or []:
            value = content.get("value")
            if isinstance(value, str) and value:
                if str(content.get("type", "")).lower() in _HTML_TYPES:
                    summary = html_to_text(value, MAX_SUMMARY)
                else:
                    summary = _clean(value[: MAX_SUMMARY * 4], MAX_SUMMARY)
                break
    return summary


def _entry_authors(raw: Any) -> list[str]:
    """The names (else e-mails) of the entry's authors, else its plain `author` string."""
    authors: list[str] = []
    for author in raw.get("authors") or []:
        name = author.get("name") or author.get("email") if isinstance(author, dict) else None
        if isinstance(name, str) and name.strip():
            authors.append(_clean(name, MAX_NAME))
    if not authors and isinstance(raw.get("author"), str) and raw["author"].strip():
        authors.append(_clean(raw["author"], MAX_NAME))
    return authors


def _entry_tags(raw: Any) -> list[str]:
    """The entry's distinct tag labels (else terms), in feed order."""
    tags: list[str] = []
    for tag in raw.get("tags") or []:
        label = tag.get("label") or tag.get("term") if isinstance(tag, dict) else None
        if isinstance(label, str) and label.strip():
            text = _clean(label, MAX_NAME)
            if text not in tags:
                tags.append(text)
    return tags


def _ttl(value: object) -> int | None:
    if isinstance(value, str) and value.strip().isdigit():
        minutes = int(value.strip())
        return minutes if 0 < minutes <= 7 * 24 * 60 else None
    return None


_SKIP_HOURS = re.compile(rb"<skipHours\b[^>]*>(.{0,4000}?)</skipHours>", re.S | re.I)
_SKIP_DAYS = re.compile(rb"<skipDays\b[^>]*>(.{0,4000}?)</skipDays>", re.S | re.I)
_HOUR = re.compile(rb"<hour\b[^>]*>\s*(\d{1,2})\s*</hour>", re.I)
_DAY = re.compile(rb"<day\b[^>]*>\s*([A-Za-z]{6,9})\s*</day>", re.I)


def _skip_schedule(data: bytes) -> tuple[frozenset[int], frozenset[str]]:
    """RSS skipHours / skipDays. Read here because feedparser keeps only the last <hour>."""
    hours: set[int] = set()
    days: set[str] = set()
    match = _SKIP_HOURS.search(data)
    if match:
        hours = {int(h) for h in _HOUR.findall(match.group(1)) if 0 <= int(h) <= 24}
        hours = {h % 24 for h in hours}
    match = _SKIP_DAYS.search(data)
    if match:
        names = {d.decode("ascii").capitalize() for d in _DAY.findall(match.group(1))}
        days = names & set(_DAYS)
    return frozenset(hours), frozenset(days)


# --------------------------------------------------------------------------- JSON Feed


def _parse_json_feed(data: bytes, url: str) -> ParsedFeed:
    """JSON Feed 1.0/1.1 (jsonfeed.org), read by hand: feedparser 6.0 does not support it and
    the format is a dozen keys of one JSON object."""
    try:
        doc = json.loads(data)
    except UnicodeDecodeError as exc:
        raise FeedError(f"invalid JSON: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise FeedError(f"invalid JSON at line {exc.lineno} col {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise FeedError("invalid JSON: nested too deeply") from None
    if not isinstance(doc, dict) or "jsonfeed.org" not in str(doc.get("version", "")):
        raise FeedError("not a feed: JSON without a jsonfeed.org version")
    items = doc.get("items")
    if not isinstance(items, list):
        raise FeedError("not a feed: JSON Feed without an items list")
    base = url or _str(doc.get("feed_url")) or None
    entries = [_json_entry(item, base) for item in items[:MAX_ENTRIES] if isinstance(item, dict)]
    return ParsedFeed(
        title=_clean(_str(doc.get("title"))[: MAX_TITLE * 4], MAX_TITLE),
        link=_link(doc.get("home_page_url"), base),
        entries=entries,
    )


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _json_entry(item: dict[str, Any], base: str | None) -> Entry:
    tags = [_clean(t, MAX_NAME) for t in item.get("tags") or [] if isinstance(t, str) and t]
    guid = item.get("id")
    return Entry(
        title=_clean(_str(item.get("title"))[: MAX_TITLE * 4], MAX_TITLE),
        summary=_json_summary(item),
        link=_link(item.get("url") or item.get("external_url"), base),
        guid=_clean(str(guid), MAX_URL) or None if isinstance(guid, str | int) else None,
        published=_json_published(item),
        authors=_json_authors(item)[:MAX_LIST],
        tags=tags[:MAX_LIST],
        enclosures=_enclosures(
            item.get("attachments"), ("url", "mime_type", "size_in_bytes"), base
        ),
    )


def _json_summary(item: dict[str, Any]) -> str:
    """The item's summary, else its content_text, else the text of its content_html."""
    summary = _clean(_str(item.get("summary"))[: MAX_SUMMARY * 4], MAX_SUMMARY)
    if not summary:
        if _str(item.get("content_text")):
            summary = _clean(_str(item["content_text"])[: MAX_SUMMARY * 4], MAX_SUMMARY)
        else:
            summary = html_to_text(_str(item.get("content_html")), MAX_SUMMARY)
    return summary


def _json_authors(item: dict[str, Any]) -> list[str]:
    """The names of the item's authors (JSON Feed 1.1 `authors`, else 1.0 `author`)."""
    raw_authors = item.get("authors") or ([item["author"]] if item.get("author") else [])
    return [
        _clean(a["name"], MAX_NAME)
        for a in raw_authors
        if isinstance(a, dict) and isinstance(a.get("name"), str) and a["name"].strip()
    ]


def _json_published(item: dict[str, Any]) -> datetime | None:
    """The first valid of date_published and date_modified."""
    published = None
    for key in ("date_published", "date_modified"):
        published = _iso_date(item.get(key))
        if published:
            break
    return published


def _iso_date(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
