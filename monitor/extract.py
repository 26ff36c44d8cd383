"""Article HTML -> `Extracted`: body text and metadata, by trafilatura.

Owns the one call into trafilatura and the caps around it. It runs in a worker process
(`monitor.workers`) because trafilatura has no time limit of its own when used as a library
and is not safe to run in concurrent threads (research §2).
"""

from __future__ import annotations

import ctypes
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from monitor.errors import ExtractError
from monitor.textsafety import clean_line, clean_text, clean_url

#: Pages are cut to this many bytes before parsing: articles fit, pathological pages cost
#: seconds and hundreds of MB beyond it (research §2: 6.8 MB took 8.6 s and 339 MB).
MAX_HTML_BYTES = 2 * 1024 * 1024
MAX_TEXT = 200_000
MAX_META = 2_000
#: Fewer words than this is navigation or a cookie banner, not an article.
MIN_WORDS = 20
#: Every this many extractions a worker drops trafilatura's caches (its own, courlan's,
#: htmldate's LRU caches) and hands freed heap back to the OS (glibc `malloc_trim`): measured
#: on 400 real pages in one process, the worker's RSS grew by 50 MB without it, 30 MB with it
#: (bench/README.md, Extraction on).
TRIM_EVERY = 20

#: Allocations from this size up are mapped on their own (`bound_large_allocations`): glibc's
#: initial value, kept fixed. A page is 130 KB at the median of the corpora, 215 KB on average.
MMAP_THRESHOLD = 128 * 1024
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)

_extractions = 0
_libc: ctypes.CDLL | None = None
_libc_looked_up = False


@dataclass(slots=True)
class Extracted:
    """The readable part of an article page. `canonical_url` is the page's own canonical URL
    (`<link rel=canonical>` or `og:url`, made absolute), or the fetched URL if it names none."""

    text: str
    title: str | None
    author: str | None
    date: str | None
    sitename: str | None
    canonical_url: str | None
    description: str | None


def extract_article(html: bytes | str, url: str) -> Extracted | None:
    """Extract the main text of an article page; None when the page holds no article text.

    Raises `ExtractError` when the HTML cannot be parsed at all.
    """
    if isinstance(html, str):
        html = html.encode("utf-8", "surrogatepass")
    html = html[:MAX_HTML_BYTES]
    if not html.strip():
        return None
    # Imported on first use (then cached by Python): the daemon's own process never extracts.
    # Workers normally find it imported by their forkserver (`monitor.workers`).
    import trafilatura
    from trafilatura.utils import load_html

    try:
        tree = load_html(html)
    except (ValueError, TypeError, LookupError) as exc:
        raise ExtractError(f"{url}: cannot parse the page: {exc}") from exc
    if tree is None:
        return None
    # Read before extraction, which prunes the tree; trafilatura itself ignores relative links.
    canonical = _canonical(tree, url)
    try:
        output = trafilatura.extract(
            tree,
            url=url,
            fast=True,
            include_comments=False,
            with_metadata=True,
            output_format="json",
        )
    except (ValueError, TypeError, LookupError) as exc:
        raise ExtractError(f"{url}: cannot parse the page: {exc}") from exc
    _after_extraction()
    if not output:
        return None
    doc: dict[str, Any] = json.loads(output)
    text = _text(doc.get("text"))
    if not text or len(text.split()) < MIN_WORDS:
        return None
    return Extracted(
        text=text,
        title=_meta(doc.get("title")),
        author=_meta(doc.get("author")),
        date=_meta(doc.get("date")),
        sitename=_meta(doc.get("source-hostname")) or _meta(doc.get("hostname")),
        canonical_url=canonical or _absolute(doc.get("source"), url),
        description=_meta(doc.get("excerpt")),
    )


def _glibc() -> ctypes.CDLL | None:
    """glibc, or None elsewhere (musl, macOS: nothing to tune). Looked up once a process."""
    global _libc, _libc_looked_up
    if not _libc_looked_up:
        _libc_looked_up = True
        try:
            libc = ctypes.CDLL(None)  # the symbols already loaded: no search, no subprocess
        except OSError:
            return None
        if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt"):  # glibc only
            _libc = libc
    return _libc


def bound_large_allocations() -> None:
    """Have glibc map every allocation of `MMAP_THRESHOLD` bytes or more on its own and unmap
    it when freed. glibc's default raises that threshold each time such a block is freed (up
    to 32 MB), after which page bodies, their pickles and lxml's buffers come from the heaps
    and arenas, which fragment and are rarely given back: the daemon's process and each
    worker held 25-30 MB more at the same work (bench/README.md, Extraction on). Process-wide
    and idempotent; the daemon's process and the workers' forkserver call it."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def trim_heap() -> None:
    """Give the free pages inside glibc's heaps and arenas back to the OS (`malloc_trim`)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def _after_extraction() -> None:
    """Bound a long-lived worker's memory (see `TRIM_EVERY`)."""
    global _extractions
    _extractions += 1
    if _extractions % TRIM_EVERY:
        return
    from trafilatura.meta import reset_caches

    reset_caches()  # also runs gc.collect()
    trim_heap()


def _canonical(tree: Any, base: str) -> str | None:
    for xpath in (
        "//head/link[@rel='canonical']/@href",
        "//link[@rel='canonical']/@href",
        "//meta[@property='og:url']/@content",
    ):
        for value in tree.xpath(xpath):
            link = _absolute(str(value), base)
            if link:
                return link
    return None


def _meta(value: object, limit: int = MAX_META) -> str | None:
    # trafilatura's JSON writes missing values as null or as the string "None".
    if not isinstance(value, str) or value in ("", "None"):
        return None
    # Page text enters here: one-line values lose control characters (`textsafety`).
    return " ".join(clean_line(value).split())[:limit] or None


def _text(value: object) -> str | None:
    """The article text: its lines kept, control characters removed."""
    if not isinstance(value, str) or value in ("", "None"):
        return None
    return clean_text(value).strip()[:MAX_TEXT] or None


def _absolute(value: object, base: str) -> str | None:
    if not isinstance(value, str) or value in ("", "None"):
        return None
    link = value.strip()[:MAX_META]  # controls are percent-encoded below, not dropped
    if not link:
        return None
    try:
        link = urljoin(base, link)
    except ValueError:
        return None
    link = clean_url(link)
    return link if urlsplit(link).scheme in ("http", "https") else None
