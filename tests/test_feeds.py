"""monitor.feeds.parse_feed on real feeds, feedparser's own test corpus and hostile bodies."""

from __future__ import annotations

import gzip
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import pytest
from corpora import DATA

from monitor.errors import FeedError
from monitor.feeds import MAX_SUMMARY, MAX_TITLE, ParsedFeed, parse_feed

REAL = DATA / "feeds" / "real"
FEEDPARSER_TESTS = DATA / "feeds" / "feedparser-tests"
ARTICLES = DATA / "articles" / "scrapinghub-aeb" / "html"


def _read(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def _real_feeds(root: Path = DATA) -> list[Path]:
    return sorted((root / "feeds" / "real").iterdir())


def _feedparser_tests(root: Path) -> list[Path]:
    return sorted(p for p in (root / "feeds" / "feedparser-tests").rglob("*") if p.is_file())


def _parse(path: Path) -> ParsedFeed:
    return parse_feed(_read(path), url=f"https://feeds.example.org/{path.name}")


# --------------------------------------------------------------------------- corpora


def _parses_or_gives_a_reason(path: Path, root: Path) -> bool:
    """Whether feedparser's test file parses; a refusal must say why. Its well-formed feeds
    (all but CDF, Microsoft's 1997 Channel Definition Format, which has no entries) parse."""
    try:
        parse_feed(_read(path), url="http://example.org/feed")
    except FeedError as exc:
        assert str(exc), path
        rel = path.relative_to(root / "feeds" / "feedparser-tests").parts
        assert rel[0] not in ("wellformed", "json") or rel[1] == "cdf", f"{path}: {exc}"
        return False
    return True


@pytest.mark.corpora
def test_every_feedparser_test_file_parses_or_gives_a_reason(corpora: Path) -> None:
    files = _feedparser_tests(corpora)
    assert len(files) == 2107
    parsed = sum(_parses_or_gives_a_reason(path, corpora) for path in files)
    refused = len(files) - parsed
    # feedparser's suite is mostly well-formed feeds; only its ill-formed files may fail.
    assert parsed > 2000
    assert refused < 50


@pytest.mark.parametrize(
    "path",
    _feedparser_tests(DATA),
    ids=lambda p: p.relative_to(FEEDPARSER_TESTS).as_posix(),
)
def test_sampled_feedparser_test_files_parse_or_give_a_reason(path: Path) -> None:
    _parses_or_gives_a_reason(path, DATA)


def test_the_sample_of_feedparser_tests_has_refusals_and_every_folder() -> None:
    files = _feedparser_tests(DATA)
    folders = {p.relative_to(FEEDPARSER_TESTS).parts[0] for p in files}
    assert folders == {"encoding", "entities", "illformed", "json", "wellformed"}
    refused = [p for p in files if not _parses_or_gives_a_reason(p, DATA)]
    assert 0 < len(refused) < len(files) // 3


def _parses_or_says_why(path: Path) -> None:
    try:
        _parse(path)
    except FeedError as exc:
        assert str(exc)


@pytest.mark.parametrize("path", _real_feeds(), ids=lambda p: p.name)
def test_every_real_feed_parses_or_gives_a_reason(path: Path) -> None:
    _parses_or_says_why(path)


@pytest.mark.corpora
def test_every_real_feed_of_the_corpora_parses_or_gives_a_reason(corpora: Path) -> None:
    feeds = _real_feeds(corpora)
    assert len(feeds) >= 67
    for path in feeds:
        _parses_or_says_why(path)


# Entries without a title or a link in these snapshots, and why:
#   scripting-news.rss: Dave Winer's title-less micro-posts (39 of 50 items have no <title>);
#   planet-gnome.atom: the fixture was trimmed to one <entry> that lost its <link>.
UNTITLED_OK = {"scripting-news.rss"}
UNLINKED_OK = {"planet-gnome.atom"}
INVALID = {"reuters-most-read_invalid.rss"}


def _has_entries_with_titles_and_links(path: Path) -> None:
    feed = _parse(path)
    assert feed.entries, path.name
    if path.name in UNTITLED_OK:
        assert any(e.title for e in feed.entries)
        assert all(e.title or e.summary for e in feed.entries)
    else:
        assert all(e.title for e in feed.entries), path.name
    if path.name not in UNLINKED_OK:
        assert all(e.link and e.link.startswith("http") for e in feed.entries), path.name


@pytest.mark.parametrize(
    "path", [p for p in _real_feeds() if p.name not in INVALID], ids=lambda p: p.name
)
def test_real_feeds_yield_entries_with_titles_and_links(path: Path) -> None:
    _has_entries_with_titles_and_links(path)


@pytest.mark.corpora
def test_every_real_feed_of_the_corpora_yields_entries_with_titles_and_links(
    corpora: Path,
) -> None:
    feeds = _real_feeds(corpora)
    assert len(feeds) >= 67
    failures = []
    for path in feeds:
        if path.name in INVALID:
            continue
        try:
            _has_entries_with_titles_and_links(path)
        except (AssertionError, FeedError) as exc:
            failures.append(f"{path.name}: {exc}")
    assert not failures, "\n".join(failures)


def test_the_truncated_reuters_feed_is_invalid_xml_with_its_position() -> None:
    with pytest.raises(FeedError, match=r"invalid XML at line 19 col 84: no element found"):
        _parse(REAL / "reuters-most-read_invalid.rss")


def test_an_html_page_is_not_a_feed() -> None:
    page = _read(next(iter(sorted(ARTICLES.glob("*.html.gz")))))
    with pytest.raises(FeedError, match="not a feed: looks like an HTML page"):
        parse_feed(page, url="https://example.org/")


def test_a_truncated_feed_with_items_keeps_them_and_warns() -> None:
    body = _read(REAL / "theguardian-us.rss")
    cut = body[: body.rindex(b"</item>") + len(b"</item>")]
    feed = parse_feed(cut, url="https://example.org/feed")
    assert feed.entries
    assert feed.warning is not None and feed.warning.startswith("invalid XML at line")


def test_json_feed_entries_are_read() -> None:
    feed = _parse(REAL / "npr-technology_jsonfeed.json")
    assert feed.title == "Technology"
    assert all(e.title and e.link and e.published for e in feed.entries)


def test_a_cut_json_feed_is_invalid_json_with_its_position() -> None:
    body = _read(REAL / "npr-technology_jsonfeed.json")
    with pytest.raises(FeedError, match=r"invalid JSON at line 1 col \d+"):
        parse_feed(body[: len(body) // 2])


# --------------------------------------------------------------------------- hostile input


def _quadratic_feed() -> bytes:
    entity = "A" * 30_000
    refs = "&big;" * 3_000
    return (
        f'<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY big "{entity}">\n]>\n'
        f'<rss version="2.0"><channel><title>{refs}</title><item><title>x</title>'
        f"<link>http://example.org/1</link></item></channel></rss>"
    ).encode()


@pytest.mark.timeout(20)
def test_a_quadratic_entity_feed_is_parsed_without_expanding_the_entity() -> None:
    body = _quadratic_feed()
    tracemalloc.start()
    try:
        feed = parse_feed(body, url="http://example.org/")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "A" * 100 not in feed.title
    assert len(feed.title) <= MAX_TITLE
    assert peak < 50 * 1024 * 1024  # expanded, the title alone would be 90 MB
    assert [e.title for e in feed.entries] == ["x"]


def test_a_body_naming_a_local_path_is_not_opened(tmp_path: Path) -> None:
    local = tmp_path / "local.xml"
    local.write_bytes(_read(REAL / "theguardian-us.rss"))
    with pytest.raises(FeedError, match="invalid XML"):
        parse_feed(str(local).encode())


def test_an_external_entity_is_not_resolved(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    body = (
        f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY xxe SYSTEM "file://{secret}">]>'
        '<rss version="2.0"><channel><title>t</title><item><title>a &xxe; b</title>'
        "</item></channel></rss>"
    ).encode()
    feed = parse_feed(body)
    assert "TOP-SECRET" not in feed.entries[0].title


def test_an_empty_body_is_not_a_feed() -> None:
    with pytest.raises(FeedError, match="empty"):
        parse_feed(b"  \n")


def test_xml_that_is_not_a_feed_says_so() -> None:
    with pytest.raises(FeedError, match="no entries and no feed element"):
        parse_feed(b'<?xml version="1.0"?><config><item>1</item></config>')


# --------------------------------------------------------------------------- fields


RSS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>
<title>Example &amp; News</title><link>/home</link><ttl>30</ttl>
<skipHours><hour>1</hour><hour>2</hour><hour>23</hour></skipHours>
<skipDays><day>Saturday</day><day>Sunday</day></skipDays>
<item>
  <title>US troops   attacked
    in  Syria</title>
  <link>/world/1</link>
  <guid isPermaLink="false">story-1</guid>
  <description>&lt;p&gt;Rockets hit &lt;b&gt;a base&lt;/b&gt;.&lt;/p&gt;&lt;p&gt;Second&amp;nbsp;
  para&lt;/p&gt;&lt;script&gt;evil()&lt;/script&gt;</description>
  <pubDate>Tue, 10 Oct 2023 14:30:00 +0200</pubDate>
  <dc:creator>Jane Roe</dc:creator>
  <category>World</category><category>Middle East</category>
</item>
</channel></rss>"""


def test_an_empty_channel_is_a_feed_with_no_entries() -> None:
    feed = parse_feed(b'<rss version="2.0"><channel><title>Quiet</title></channel></rss>')
    assert feed.title == "Quiet"
    assert feed.entries == []


def test_html_fields_become_plain_text() -> None:
    entry = parse_feed(RSS, url="https://news.example.org/rss").entries[0]
    assert entry.title == "US troops attacked in Syria"
    assert entry.summary == "Rockets hit a base. Second para"


def test_links_are_resolved_against_the_feed_url() -> None:
    feed = parse_feed(RSS, url="https://news.example.org/rss")
    assert feed.link == "https://news.example.org/home"
    assert feed.entries[0].link == "https://news.example.org/world/1"


def _items(*guids: str, base: str = "") -> bytes:
    attr = f' xml:base="{base}"' if base else ""
    items = "".join(f"<item><title>t{i}</title>{g}</item>" for i, g in enumerate(guids))
    return f'<rss version="2.0"><channel{attr}><title>x</title>{items}</channel></rss>'.encode()


@pytest.mark.parametrize(
    ("guid", "key"),
    [
        # Resolved against the feed's URL, as feedparser does when given a base URI ...
        ("<guid>123</guid>", "https://news.example.org/dir/123"),
        ('<guid isPermaLink="true">a/b</guid>', "https://news.example.org/dir/a/b"),
        ("<guid>tag:example.org,2024:1</guid>", "tag:example.org,2024:1"),
        # ... but never an id that says it is not a link.
        ('<guid isPermaLink="false">123</guid>', "123"),
        ('<guid isPermaLink="False">a/b</guid>', "a/b"),
    ],
)
def test_entry_ids_keep_the_form_stored_seen_lists_hold(guid: str, key: str) -> None:
    # Alone, and next to an entry whose id is resolved (the feed is then parsed with the base
    # URI; alone, without it except for the first two): always what feedparser gives with it.
    url = "https://news.example.org/dir/feed.xml"
    for body in (_items(guid), _items(guid, "<guid>z</guid>")):
        entry = parse_feed(body, url=url).entries[0]
        legacy = feedparser.parse(body, response_headers={"content-location": url}).entries[0]
        assert entry.guid == legacy.get("id") == key


def test_links_under_a_relative_xml_base_resolve_as_before() -> None:
    body = _items('<guid isPermaLink="false">1</guid><link>post</link>', base="/blog/")
    entry = parse_feed(body, url="https://news.example.org/dir/feed.xml").entries[0]
    assert entry.link == "https://news.example.org/blog/post"
    assert entry.guid == "1"


def test_published_is_an_aware_utc_datetime() -> None:
    entry = parse_feed(RSS).entries[0]
    assert entry.published == datetime(2023, 10, 10, 12, 30, tzinfo=UTC)


def test_guid_authors_and_tags_are_kept() -> None:
    entry = parse_feed(RSS).entries[0]
    assert entry.guid == "story-1"
    assert entry.authors == ["Jane Roe"]
    assert entry.tags == ["World", "Middle East"]


def test_ttl_skip_hours_and_skip_days_are_read() -> None:
    feed = parse_feed(RSS)
    assert feed.title == "Example & News"
    assert feed.ttl_minutes == 30
    assert feed.skip_hours == frozenset({1, 2, 23})
    assert feed.skip_days == frozenset({"Saturday", "Sunday"})


def test_long_fields_are_capped() -> None:
    body = (
        f'<rss version="2.0"><channel><title>t</title><item><title>{"T" * 50_000}</title>'
        f"<description>{'word ' * 20_000}</description></item></channel></rss>"
    ).encode()
    entry = parse_feed(body).entries[0]
    assert len(entry.title) == MAX_TITLE
    assert len(entry.summary) <= MAX_SUMMARY


def test_non_http_links_are_dropped() -> None:
    body = (
        b'<rss version="2.0"><channel><title>t</title><item><title>x</title>'
        b"<link>javascript:alert(1)</link></item></channel></rss>"
    )
    assert parse_feed(body, url="https://example.org/").entries[0].link is None


def test_legacy_charsets_are_decoded() -> None:
    feed = _parse(REAL / "oren-ru_windows-1251.rss")
    assert any("\u0400" <= ch <= "\u04ff" for e in feed.entries for ch in e.title)
