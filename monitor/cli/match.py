"""`monitor match`: run the configured rules over articles given on the command line.

Owns reading the inputs (a URL, fetched and extracted; an HTML file; a feed file; a `.txt`
article, title on its first line; a JSON-lines file of articles, `-` for stdin; `.gz` files are
decompressed) and printing, for each article
and matching rule, the hits and snippet (text) or one JSON object (json); `--explain` adds why
the other rules did not match. Exits 0 whether or not anything matched; 2 when the config,
the rules or an input cannot be used.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import io
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from monitor.config import FetchSettings, Settings, load_config
from monitor.errors import ConfigError, ExtractError, FeedError, FetchError
from monitor.extract import extract_article
from monitor.fetch import Fetcher, FetchResult
from monitor.models import Article
from monitor.rules import Match, RuleCompileError, RuleSet, compile_rules
from monitor.store import FeedSpec, NewArticle, Store
from monitor.stories import StoryIndex

_HTML_SUFFIXES = (".html", ".htm", ".xhtml")
_FEED_MARKERS = (b"<rss", b"<feed", b"<rdf:rdf", b"<rdf", b"jsonfeed.org")


@dataclass(slots=True)
class InputArticle:
    """One article to match: its id (own id, URL, or file name and position) and fields."""

    id: str
    fields: dict[str, str]


class InputError(Exception):
    """An input that cannot be read; the message names it."""


def run(args: argparse.Namespace) -> int:
    out: TextIO = sys.stdout
    try:
        settings = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    try:
        ruleset = compile_settings_rules(settings)
    except RuleCompileError as exc:
        print_rule_errors(exc, settings, sys.stderr)
        return 2
    names = _rule_names(ruleset, args.rule)
    if names is None:
        return 2
    articles: list[InputArticle] = []
    matched = 0
    try:
        for source in args.inputs:
            for article in read_input(source, settings.fetch):
                matched += _report(ruleset, names, article, args.format, args.explain, out)
                articles.append(article)
    except InputError as exc:
        print(f"monitor match: {exc}", file=sys.stderr)
        return 2
    if not matched:  # on stderr: stdout stays the matches alone (JSON lines)
        print(
            f"no match: {len(articles)} article(s), {len(names)} rule(s)"
            + ("" if args.explain else " (--explain says why)"),
            file=sys.stderr,
        )
    if args.explain and len(articles) > 1:
        _report_stories(group_stories(articles, settings), args.format, out)
    return 0


def _rule_names(ruleset: RuleSet, wanted: list[str] | None) -> list[str] | None:
    """The rules to match, in rule order: all, or those `wanted` (None: one is unknown)."""
    names = ruleset.rule_names
    if wanted:
        unknown = [r for r in wanted if r not in names]
        if unknown:
            print(f"unknown rule {unknown[0]!r} (rules: {', '.join(names)})", file=sys.stderr)
            return None
        names = [n for n in names if n in wanted]
    return names


def group_stories(articles: list[InputArticle], settings: Settings) -> list[tuple[str, int, str]]:
    """Which inputs the daemon would treat as one story: (id, story number, why it joined).

    Runs the daemon's own story index (monitor.stories) on a throwaway store, one feed per
    input, so what `--explain` shows is exactly what `monitor run` would decide.
    """
    index = StoryIndex.configured(settings.stories)
    now = time.time()
    out: list[tuple[str, int, str]] = []
    numbers: dict[int, int] = {}
    with tempfile.TemporaryDirectory(prefix="monitor-match-") as tmp:
        store = Store(f"sqlite:///{tmp}/stories.db")
        try:
            specs = [FeedSpec(f"input:{i}", a.id, False) for i, a in enumerate(articles)]
            store.feeds.sync(specs, now)
            feed_ids = {f.url: f.id for f in store.feeds.all()}
            for i, a in enumerate(articles):
                f = a.fields
                article = Article(
                    feed=f.get("feed") or a.id,
                    guid=a.id,
                    url=f.get("url", ""),
                    title=f.get("title", ""),
                    summary=f.get("summary", ""),
                    body=f.get("body", ""),
                )
                [res] = store.articles.commit(
                    [NewArticle(article, index.fingerprint(article), [])],
                    feed_id=feed_ids[f"input:{i}"],
                    stories=index,
                    now=now,
                )
                assert res.story_id is not None
                number = numbers.setdefault(res.story_id, len(numbers) + 1)
                out.append((a.id, number, res.story_reason))
        finally:
            store.close()
    return out


def _report_stories(groups: list[tuple[str, int, str]], fmt: str, out: TextIO) -> None:
    if fmt == "json":
        for ident, number, reason in groups:
            print(json.dumps({"id": ident, "story": number, "why_grouped": reason}), file=out)
        return
    stories = len({number for _, number, _ in groups})
    print(f"stories: {len(groups)} articles in {stories} stories", file=out)
    for ident, number, reason in groups:
        if reason == "new":
            why = "first article"
        elif reason.startswith("text~"):
            why = f"joined: near-duplicate text, similarity {reason[5:]}"
        else:
            why = f"joined: same {reason}"
        print(f"  story {number}: {ident} ({why})", file=out)


def compile_settings_rules(settings: Settings) -> RuleSet:
    """The enabled rules of `settings` with its entities."""
    from monitor.checks import rule_specs  # with each rule's scorer

    return compile_rules(
        rule_specs(settings), settings.entities, fold_accents=settings.fold_accents
    )


def print_rule_errors(exc: RuleCompileError, settings: Settings, stream: TextIO) -> None:
    """Each error as `file:line:col: message`, then the query line with a caret and hint."""
    index = {r.name: i for i, r in enumerate(settings.rules)}
    for error in exc.errors:
        i = index.get(error.rule)
        if i is None:
            print(f"{settings.source.default_file}: {error.rule}: {error.message}", file=stream)
            if error.hint:
                print(f"  hint: {error.hint}", file=stream)
            continue
        pos = settings.source.query_pos(i, error.offset)
        print(f"{pos}: rule {error.rule!r}: {error.message}", file=stream)
        print(error.render(settings.rules[i].query), file=stream)


def _report(
    ruleset: RuleSet, names: list[str], article: InputArticle, fmt: str, explain: bool, out: TextIO
) -> int:
    """Print the article's matches (and with `explain` its misses); returns how many matched."""
    wanted = set(names)
    matches = {m.rule: m for m in ruleset.match(article.fields) if m.rule in wanted}
    _print_report(ruleset, names, article, matches, fmt, explain, out)
    return len(matches)


def _print_report(
    ruleset: RuleSet,
    names: list[str],
    article: InputArticle,
    matches: dict[str, Match],
    fmt: str,
    explain: bool,
    out: TextIO,
) -> None:
    for name in names:
        match = matches.get(name)
        if match is None and not explain:
            continue
        if fmt == "json":
            obj: dict[str, Any] = {"id": article.id, "rule": name, "matched": match is not None}
            if match is not None:
                obj["hits"] = [
                    {
                        "field": h.field,
                        "start": h.start,
                        "end": h.end,
                        "leaf": h.leaf,
                        "text": article.fields[h.field][h.start : h.end],
                    }
                    for h in match.hits
                ]
                obj["snippet"] = match.snippet(article.fields).marked()
            else:
                obj["hits"] = []
                obj["explanation"] = ruleset.explain(article.fields, name)
            print(json.dumps(obj, ensure_ascii=False), file=out)
        elif match is not None:
            title = article.fields.get("title", "")
            print(f"{article.id}: {name} matched" + (f" — {title}" if title else ""), file=out)
            for hit in match.hits:
                text = article.fields[hit.field][hit.start : hit.end]
                print(f"  {hit.field}[{hit.start}:{hit.end}] {text!r} ← {hit.leaf}", file=out)
            snippet = match.snippet(article.fields)
            print(f"  snippet ({snippet.field}): {snippet.marked()}", file=out)
        else:
            print(f"{article.id}: {name} did not match", file=out)
            for line in ruleset.explain(article.fields, name).splitlines()[1:]:
                print(f"  {line}", file=out)


# --------------------------------------------------------------------------- inputs


def read_input(source: str, fetch_settings: FetchSettings) -> Iterator[InputArticle]:
    """The articles of one INPUT (see the module docstring)."""
    if source == "-":
        yield from _json_lines(sys.stdin.buffer.read(), "stdin")
        return
    if source.startswith(("http://", "https://")):
        yield from _fetch_url(source, fetch_settings)
        return
    path = Path(source)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{source}: {exc.strerror or exc}") from None
    name = path.name
    if name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise InputError(f"{source}: not a valid gzip file ({exc})") from None
        name = name[:-3]
    if name.lower().endswith(_HTML_SUFFIXES):
        yield _html_article(data, source, None)
        return
    if name.lower().endswith(".txt"):
        yield _text_article(data, source)
        return
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<") or any(m in head for m in _FEED_MARKERS):
        if head.startswith(b"<") and not any(m in head for m in _FEED_MARKERS[:4]):
            yield _html_article(data, source, None)
            return
        yield from _feed_articles(data, source)
        return
    yield from _json_lines(data, source)


def _json_lines(data: bytes, name: str) -> Iterator[InputArticle]:
    for lineno, raw in enumerate(io.BytesIO(data), start=1):
        line = raw.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{name}:{lineno}: not a JSON object ({exc})") from None
        if not isinstance(obj, dict):
            raise InputError(f"{name}:{lineno}: each line must be a JSON object")
        fields = {
            k: _as_text(obj.get(k))
            for k in ("title", "summary", "body", "url", "author", "tags", "feed")
        }
        ident = obj.get("id") or obj.get("url") or f"{name}:{lineno}"
        yield InputArticle(str(ident), fields)


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    return str(value)


def _text_article(data: bytes, source: str) -> InputArticle:
    """A plain-text article: the first non-empty line is its title, the rest its body."""
    text = data.decode("utf-8", errors="replace").strip()
    title, _, body = text.partition("\n")
    return InputArticle(source, {"title": title.strip(), "body": body.strip()})


def _feed_articles(data: bytes, source: str) -> Iterator[InputArticle]:
    # Here, not at the top: every `monitor` command imports this module, and the daemon's
    # process (`monitor run`) should not load feedparser, which only its workers use.
    from monitor.feeds import parse_feed

    try:
        parsed = parse_feed(data, url=source if "://" in source else "")
    except FeedError as exc:
        raise InputError(f"{source}: not a readable feed ({exc})") from None
    for i, entry in enumerate(parsed.entries, start=1):
        fields = {
            "title": entry.title,
            "summary": entry.summary,
            "url": entry.link or "",
            "author": "\n".join(entry.authors),
            "tags": "\n".join(entry.tags),
            "feed": parsed.title,
        }
        yield InputArticle(entry.guid or entry.link or f"{source}#{i}", fields)


def _html_article(data: bytes, source: str, url: str | None) -> InputArticle:
    try:
        extracted = extract_article(data, url or "")
    except ExtractError as exc:
        raise InputError(f"{source}: {exc}") from None
    if extracted is None:
        raise InputError(f"{source}: no article text could be extracted")
    fields = {
        "title": extracted.title or "",
        "summary": extracted.description or "",
        "body": extracted.text,
        "url": url or extracted.canonical_url or "",
        "author": extracted.author or "",
        "feed": extracted.sitename or "",
    }
    return InputArticle(url or source, fields)


def _fetch_url(url: str, settings: FetchSettings) -> Iterator[InputArticle]:
    """Fetch with the daemon's own client (caps, deadline, redirects); a feed gives its
    entries, a page its extracted article.

    The user typed this URL, so private addresses are allowed, unlike links found in feeds.
    """

    async def get() -> FetchResult:
        async with Fetcher(settings) as fetcher:
            return await fetcher.fetch(
                url, max_bytes=settings.max_page_bytes, allow_private=True, accept=_URL_ACCEPT
            )

    try:
        page = asyncio.run(get())
    except FetchError as exc:
        raise InputError(str(exc)) from None
    if _looks_like_feed(page.body, page.content_type):
        yield from _feed_articles(page.body, page.final_url)
        return
    yield _html_article(page.body, url, page.final_url)


# A page or a feed: `monitor match URL` takes either.
_URL_ACCEPT = (
    "text/html, application/xhtml+xml;q=0.9, application/rss+xml, application/atom+xml,"
    " application/feed+json, application/xml;q=0.8, text/xml;q=0.8, */*;q=0.5"
)


def _looks_like_feed(body: bytes, content_type: str | None) -> bool:
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind in ("application/rss+xml", "application/atom+xml", "application/feed+json"):
        return True
    if kind in ("text/html", "application/xhtml+xml"):
        return False
    head = body[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return any(m in head for m in _FEED_MARKERS)
