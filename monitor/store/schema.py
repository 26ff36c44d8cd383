"""The store's tables (SQLAlchemy Core), shared by SQLite and PostgreSQL.

Times are stored as UNIX seconds (float) so comparisons are the same on both engines and no
timezone conversion can shift a due time. The Alembic migrations in `migrations/versions/`
create exactly these tables; `tests/test_store.py` checks that the two never drift apart.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)

metadata = MetaData()

feeds = Table(
    "feeds",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("url", String(2048), nullable=False, unique=True),  # as configured: the identity
    Column("fetch_url", String(2048), nullable=False),  # after permanent redirects
    Column("name", String(500), nullable=False, default=""),
    Column("active", Boolean, nullable=False, default=True),  # still in the config
    Column("allow_private", Boolean, nullable=False, default=False),
    Column("etag", String(1024)),
    Column("last_modified", String(200)),
    Column("content_hash", String(64)),
    Column("next_poll_at", Float, nullable=False, default=0.0),
    Column("lease_owner", String(100)),
    Column("lease_until", Float),
    Column("last_attempt_at", Float),
    Column("last_success_at", Float),
    Column("last_new_entry_at", Float),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("failing_since", Float),
    Column("last_error", Text),
    Column("last_error_kind", String(50)),
    Column("broken_reported", Boolean, nullable=False, default=False),
    Column("redirect_target", String(2048)),
    Column("redirect_count", Integer, nullable=False, default=0),
    Column("min_interval", Float),  # lower bound learnt from ttl / max-age / Retry-After
    # The feed's skipHours / skipDays ("h:0,1;d:saturday"), kept for polls answered 304.
    Column("skip", String(300)),
    Column("polls", Integer, nullable=False, default=0),
    # Of those good polls, how many were answered 304 (the console's 304 ratio, every node).
    Column("not_modified", Integer, nullable=False, server_default="0"),
    Column("entries_total", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    # Paused from the console (any node): not leased until resumed.
    Column("paused", Boolean, nullable=False, server_default=false()),
    Column("paused_at", Float),
    Column("paused_by", String(100)),
    Index("ix_feeds_due", "next_poll_at"),
    # /healthz's feeds by health: the active count and the failing range, index-only.
    Index("ix_feeds_health", "active", "consecutive_failures", "broken_reported"),
)

stories = Table(
    "stories",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("title", Text, nullable=False, default=""),
    Column("url", String(2048)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_stories_updated", "updated_at"),
)

articles = Table(
    "articles",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("feed_id", Integer, ForeignKey("feeds.id", ondelete="CASCADE"), nullable=False),
    Column("guid", String(2048), nullable=False),
    Column("url", String(2048), nullable=False, default=""),
    Column("canonical_url", String(2048)),
    Column("title", Text, nullable=False, default=""),
    Column("summary", Text, nullable=False, default=""),
    Column("body", Text, nullable=False, default=""),
    Column("authors", Text, nullable=False, default="[]"),  # JSON list
    Column("tags", Text, nullable=False, default="[]"),  # JSON list
    Column("published", Float),
    Column("fetched_at", Float, nullable=False),
    Column("extract_error", Text),
    Column("story_id", Integer, ForeignKey("stories.id")),
    Column("story_reason", String(200)),  # why it joined its story: url, title, text~0.83, ...
    Column("minhash", LargeBinary),
    UniqueConstraint("feed_id", "guid", name="uq_articles_feed_guid"),
    Index("ix_articles_fetched_feed", "fetched_at", "feed_id"),  # entries per feed per day
    Index("ix_articles_story", "story_id"),
)

# Exact identities of a story (canonical URL, normalised title, feed+link): key -> story.
story_keys = Table(
    "story_keys",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("story_id", Integer, ForeignKey("stories.id", ondelete="CASCADE"), nullable=False),
    Column("seen_at", Float, nullable=False),
    Index("ix_story_keys_seen", "seen_at"),
    Index("ix_story_keys_story", "story_id"),  # retention deletes a story's keys
)

# MinHash LSH bands of article bodies: band hash -> article (and its story).
story_bands = Table(
    "story_bands",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("band", BigInteger, nullable=False),
    Column("article_id", Integer, ForeignKey("articles.id", ondelete="CASCADE"), nullable=False),
    Column("story_id", Integer, ForeignKey("stories.id", ondelete="CASCADE"), nullable=False),
    Column("seen_at", Float, nullable=False),
    Index("ix_story_bands_band", "band"),
    Index("ix_story_bands_seen", "seen_at"),
    Index("ix_story_bands_article", "article_id"),  # retention deletes an article's bands
)

matches = Table(
    "matches",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("article_id", Integer, ForeignKey("articles.id", ondelete="CASCADE"), nullable=False),
    Column("rule", String(100), nullable=False),
    Column("explanation", Text, nullable=False),  # JSON: hits with fields and spans
    Column("created_at", Float, nullable=False),
    UniqueConstraint("article_id", "rule", name="uq_matches_article_rule"),
    Index("ix_matches_rule_created", "rule", "created_at"),  # the console's matches per day
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String(64), nullable=False, unique=True),  # random: base of idempotency keys
    Column("rule", String(100), nullable=False),
    Column("story_id", Integer, ForeignKey("stories.id"), nullable=False),
    Column("article_id", Integer, ForeignKey("articles.id"), nullable=False),
    Column("severity", String(20), nullable=False),
    Column("status", String(20), nullable=False),  # sent | suppressed (cooldown) | waiting
    Column("message", Text, nullable=False),  # JSON AlertMessage, the alert as first sent
    Column("created_at", Float, nullable=False),
    UniqueConstraint("rule", "story_id", name="uq_alerts_rule_story"),
    Index("ix_alerts_rule_created", "rule", "created_at"),
    Index("ix_alerts_rule_id", "rule", "id"),  # the console's timeline of one rule, by id
    Index("ix_alerts_severity_id", "severity", "id"),  # ... of one severity
    Index("ix_alerts_article", "article_id"),  # retention: is an article still needed
    Index("ix_alerts_story", "story_id"),  # retention: is a story still needed
)

#: The claimable deliveries, as written in the claim and in its index's predicate: literal
#: values, as SQLite uses a partial index only for a query that repeats its terms.
CLAIMABLE_SQL = "deliveries.status IN ('pending', 'failed')"

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("alert_id", Integer, ForeignKey("alerts.id")),  # NULL for source-health events
    Column("channel", String(100), nullable=False),
    Column("kind", String(30), nullable=False),  # alert | story.updated | source.* | digest
    Column("idempotency_key", String(200), nullable=False, unique=True),
    # pending -> sent | failed (will retry) -> dead; held (waits for a digest) -> digested
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("lease_owner", String(100)),
    Column("lease_until", Float),
    Column("last_error", Text),
    Column("receipt", Text),
    Column("payload", Text, nullable=False),  # JSON AlertMessage
    Column("digest_id", Integer),  # for held rows: the digest delivery that carried them
    Column("created_at", Float, nullable=False),
    Column("sent_at", Float),
    Index("ix_deliveries_channel_status", "channel", "status"),
    Index("ix_deliveries_alert", "alert_id"),  # an alert's deliveries (the console)
    Index("ix_deliveries_status_alert", "status", "alert_id"),  # alerts with a dead delivery
    # The outbox claim: the claimable rows in the order it takes them (`ORDER BY
    # next_attempt_at, id LIMIT n`), so a claim reads the first rows of an index instead of
    # sorting the whole due backlog. Sent rows, the bulk of history, are not in it. (It
    # replaced ix_deliveries_due (status, next_attempt_at), which SQLite's planner preferred.)
    # Its PostgreSQL condition is declared by `declare_postgresql` (see there).
    Index("ix_deliveries_claim", "next_attempt_at", "id", sqlite_where=text(CLAIMABLE_SQL)),
)


def declare_postgresql() -> None:
    """Declare what the tables need on PostgreSQL beyond their generic form: the claim
    index's condition. `make_engine` calls it for a PostgreSQL engine, before anything can
    create or compare the tables (idempotent).

    Naming `postgresql_where` in the `Index` above would make SQLAlchemy load its PostgreSQL
    dialect package (the modules of five drivers, ~25 ms) when this module is imported, in
    every command on SQLite too (bench/README.md, `monitor once` and start-up)."""
    claim = next(i for i in deliveries.indexes if i.name == "ix_deliveries_claim")
    claim.dialect_options["postgresql"]["where"] = text(CLAIMABLE_SQL)


# An analyst's verdict on an alert (`monitor feedback`): labelled data for evaluate and train.
feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("alert_id", Integer, ForeignKey("alerts.id"), nullable=False),
    Column("verdict", Text, nullable=False),  # relevant | irrelevant
    Column("note", Text),
    Column("author", Text),
    Column("created_at", Float, nullable=False),
    CheckConstraint("verdict IN ('relevant', 'irrelevant')", name="ck_feedback_verdict"),
    Index("ix_feedback_alert", "alert_id"),
)

# What stays of a feed's entry after retention deleted its article: the feed and a 64-bit hash
# of the entry's GUID (`guid_key`), so that an entry the feed still lists is not taken as new,
# stored and alerted again. 45 bytes a row on SQLite (no rowid: the primary key is the table;
# measured), ~100 on PostgreSQL with its indexes; pruned after `retention.tombstones`.
entry_tombstones = Table(
    "entry_tombstones",
    metadata,
    Column("feed_id", Integer, ForeignKey("feeds.id", ondelete="CASCADE"), primary_key=True),
    Column("guid_hash", BigInteger, primary_key=True, autoincrement=False),
    Column("pruned_at", Float, nullable=False),
    Index("ix_entry_tombstones_pruned", "pruned_at"),
    sqlite_with_rowid=False,
)


def guid_key(guid: str) -> int:
    """The tombstone key of an entry GUID: the first 8 bytes of its BLAKE2b digest, signed so
    that it fits a BIGINT. Two GUIDs of one feed collide with odds of about n²/2⁶⁵ (a feed
    with a million pruned entries: one in 36 million)."""
    digest = hashlib.blake2b(guid.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
