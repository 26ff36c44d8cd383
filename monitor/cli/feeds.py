"""`monitor feeds list | add URL | export`: the configured feeds.

`add` takes a feed URL or any page of a site: a page's feed is found from its
`<link rel="alternate">` tags, else at the common paths (/feed, /rss.xml, ...). The feed is
appended to a feeds file (the config file unless `--file`), keeping the file's comments and
layout (ruamel.yaml round trip); the config is then loaded again, and the file restored if it
no longer loads. `export` writes OPML 2.0, which every feed reader imports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from monitor.cli import EXIT_ERROR, EXIT_OK
from monitor.config import FeedConfig, FetchSettings, load_config
from monitor.errors import ConfigError, FeedError, FetchError, MonitorError

FEED_TYPES = (
    "application/rss+xml",
    "application/atom+xml",
    "application/feed+json",
    "application/json",
    "application/rdf+xml",
    "text/xml",
    "application/xml",
)
COMMON_PATHS = (
    "/feed",
    "/rss",
    "/feed.xml",
    "/rss.xml",
    "/atom.xml",
    "/index.xml",
    "/feed/",
    "/rss/",
    "/feeds/posts/default",
    "/?feed=rss2",
)


class FeedNotFound(MonitorError):
    kind = "usage"


# --------------------------------------------------------------------------- list / export


def list_feeds(args: argparse.Namespace) -> int:
    settings = load_config(args.config)
    feeds = settings.feed_list
    if args.format == "json":
        print(json.dumps([feed_json(f) for f in feeds], indent=2))
        return EXIT_OK
    for f in feeds:
        extra = []
        if f.interval is not None:
            extra.append(f"every {f.interval}")
        if f.tags:
            extra.append("tags " + ",".join(f.tags))
        if not f.enabled:
            extra.append("disabled")
        note = f"  ({'; '.join(extra)})" if extra else ""
        print(f"{f.display_name[:40]:<40} {f.url}{note}")
    print(f"{len(feeds)} feeds", file=sys.stderr)
    return EXIT_OK


def feed_json(f: FeedConfig) -> dict[str, Any]:
    return {
        "name": f.display_name,
        "url": f.url,
        "interval": f.interval.total_seconds() if f.interval is not None else None,
        "extract": f.extract,
        "tags": list(f.tags),
        "allow_private": f.allow_private,
        "enabled": f.enabled,
    }


def opml(feeds: list[FeedConfig], title: str = "monitor feeds") -> bytes:
    """OPML 2.0: one `<outline type="rss">` per feed, its tags as `category`."""
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = title
    body = ET.SubElement(root, "body")
    for f in feeds:
        attrs = {"type": "rss", "text": f.display_name, "title": f.display_name, "xmlUrl": f.url}
        if f.tags:
            attrs["category"] = ",".join(f.tags)
        ET.SubElement(body, "outline", attrs)
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


def export(args: argparse.Namespace) -> int:
    data = opml(load_config(args.config).feed_list)
    if args.output:
        Path(args.output).write_bytes(data)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.buffer.write(data)
    return EXIT_OK


# --------------------------------------------------------------------------- discovery


class _AlternateLinks(HTMLParser):
    """The feeds a page announces: `<link rel="alternate" type="application/rss+xml" ...>`."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str]] = []  # (href, title)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "link":
            return
        a = {k.lower(): (v or "") for k, v in attrs}
        rels = a.get("rel", "").lower().split()
        kind = a.get("type", "").lower().split(";")[0].strip()
        if "alternate" in rels and kind in FEED_TYPES and a.get("href"):
            self.found.append((a["href"], a.get("title", "")))


def alternate_links(html: bytes, base: str) -> list[str]:
    """Absolute URLs of the feeds a page links to, in page order."""
    parser = _AlternateLinks()
    parser.feed(html.decode("utf-8", errors="replace"))
    seen: list[str] = []
    for href, _title in parser.found:
        url = urljoin(base, href)
        if url not in seen:
            seen.append(url)
    return seen


@dataclass(slots=True)
class Found:
    url: str
    title: str
    entries: int
    how: str


async def discover(url: str, settings: FetchSettings, *, allow_private: bool) -> Found:
    """The feed at `url`, or the one its page links to, or one at a common path."""
    from monitor.feeds import parse_feed
    from monitor.fetch import Fetcher

    async with Fetcher(settings) as fetcher:

        async def try_feed(candidate: str, how: str) -> tuple[Found | None, bytes, str]:
            page = await fetcher.fetch(candidate, allow_private=allow_private)
            try:
                parsed = parse_feed(page.body, url=page.final_url, content_type=page.content_type)
            except FeedError:
                return None, page.body, page.final_url
            return Found(page.final_url, parsed.title, len(parsed.entries), how), b"", ""

        found, body, final = await try_feed(url, "the URL is a feed")
        if found is not None:
            return found
        tried = []
        for link in alternate_links(body, final):
            tried.append(link)
            try:
                found, _, _ = await try_feed(link, "linked from the page")
            except FetchError:
                continue
            if found is not None:
                return found
        for path in COMMON_PATHS:
            candidate = urljoin(final, path)
            tried.append(candidate)
            try:
                found, _, _ = await try_feed(candidate, f"found at {path}")
            except FetchError:
                continue
            if found is not None and found.entries:
                return found
    raise FeedNotFound(
        f"{url}: not a feed, and no feed found (links on the page and {len(COMMON_PATHS)}"
        " common paths tried); give the feed's URL"
    )


# --------------------------------------------------------------------------- add


def append_feed(path: Path, entry: dict[str, Any]) -> None:
    """Append `entry` to the `feeds:` list of the YAML file at `path`, keeping its comments."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    yaml = YAML()  # round trip: comments, order and quoting are kept
    yaml.preserve_quotes = True
    yaml.width = 4096
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    data = yaml.load(text) if text.strip() else CommentedMap()
    if not isinstance(data, CommentedMap):
        raise FeedNotFound(f"{path}: not a mapping of sections; cannot add a feed to it")
    feeds = data.get("feeds")
    if feeds is None:
        feeds = data["feeds"] = CommentedSeq()
    if not isinstance(feeds, CommentedSeq):
        raise FeedNotFound(f"{path}: `feeds` is not a list; cannot add a feed to it")
    item = CommentedMap(entry)
    if len(feeds) and all(getattr(f, "fa", None) and f.fa.flow_style() for f in feeds):
        item.fa.set_flow_style()  # match the file: `- {url: ..., name: ...}` entries
    feeds.append(item)
    with path.open("w", encoding="utf-8") as out:
        yaml.dump(data, out)


def add(args: argparse.Namespace) -> int:
    settings = load_config(args.config)
    found = asyncio.run(discover(args.url, settings.fetch, allow_private=args.allow_private))
    known = {f.url for f in settings.feed_list}
    if found.url in known:
        print(f"{found.url} is already configured", file=sys.stderr)
        return EXIT_ERROR
    target = Path(args.file or args.config)
    entry: dict[str, Any] = {"url": found.url, "name": args.name or found.title or found.url}
    if args.allow_private:
        entry["allow_private"] = True
    before = target.read_bytes() if target.exists() else None
    append_feed(target, entry)
    try:
        load_config(args.config)
    except ConfigError:
        if before is None:
            target.unlink()
        else:
            target.write_bytes(before)
        raise
    print(f"added {entry['name']!r} {found.url} ({found.how}, {found.entries} entries) to {target}")
    return EXIT_OK
