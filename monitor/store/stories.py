"""The store side of story identity: assign an article to a story, remember its keys and
bands, prune what left the window, and do it for a whole poll at once (`StoryBatch`).

`monitor.stories` holds the pure part (canonical URLs, titles, MinHash fingerprints and their
comparison), which the parse workers import without SQLAlchemy; `StoryRepo` runs its queries
inside the caller's transaction, so an article, its story and its alerts commit together.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import (
    Connection,
    Engine,
    Insert,
    Select,
    Update,
    bindparam,
    delete,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.dml import ReturningInsert
from sqlalchemy.sql.elements import BindParameter

from monitor.store import schema as s
from monitor.store.engine import LOCKS, analyse, arrays, unnest_insert
from monitor.stories import Fingerprint, StoryIndex, site_of

_SQLITE_NEW_STORY = "INSERT INTO stories (title, url, created_at, updated_at) VALUES (?, ?, ?, ?)"
_SQLITE_UPSERT_KEYS = (
    "INSERT INTO story_keys (key, story_id, seen_at) VALUES (?, ?, ?) ON CONFLICT (key) "
    "DO UPDATE SET story_id = excluded.story_id, seen_at = excluded.seen_at"
)
_SQLITE_TOUCH_STORY = "UPDATE stories SET updated_at = ? WHERE id = ?"
_SQLITE_ADD_BANDS = (
    "INSERT INTO story_bands (band, article_id, story_id, seen_at) VALUES (?, ?, ?, ?)"
)


class StoryRepo:
    """Stories of one `StoryIndex` (its window and thresholds) in the database."""

    def __init__(self, index: StoryIndex) -> None:
        self.index = index

    def assign(
        self,
        conn: Connection,
        fp: Fingerprint,
        *,
        title: str,
        url: str,
        now: float,
        known: Mapping[str, int] | None = None,
        batch: StoryBatch | None = None,
    ) -> tuple[int, str, bool]:
        """Find or create the story of an article. Returns (story_id, reason, is_new).

        `known` (from `StoryBatch`) stands in for the key lookup: it must hold what that query
        would return for every key of `fp`, i.e. each key seen within the window and its story.
        With `batch`, the articles the batch holds but has not written count as stored, and a
        new story is only reserved there (a negative id until `StoryBatch.write_stories`).
        """
        cutoff = now - self.index.window
        if fp.keys:
            if known is not None:
                found = {k: known[k] for _, k in fp.keys if k in known}
            else:
                found = self._known_keys(conn, [k for _, k in fp.keys], cutoff)
            for reason, key in fp.keys:
                story_id = found.get(key)
                if story_id is None:
                    continue
                if reason == "url" or not self._body_contradicts(conn, fp, story_id, cutoff, batch):
                    return story_id, reason, False
        if fp.bands and fp.minhash is not None:
            best = self._text_match(conn, fp, cutoff, site=site_of(url), batch=batch)
            if best is not None:
                return best[1], f"text~{best[0]:.2f}", False
        if batch is not None:
            return batch.reserve(title, url), "new", True
        return self.new_story(conn, title=title, url=url, now=now), "new", True

    @staticmethod
    def new_story(conn: Connection, *, title: str, url: str, now: float) -> int:
        if conn.dialect.name == "sqlite":
            # SQLite's own cursor: SQLAlchemy's overhead was most of this INSERT's cost.
            cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            cur.execute(_SQLITE_NEW_STORY, (title, url, now, now))
            return int(cur.lastrowid)
        q = _queries(conn.dialect.name)
        row = {"title": title, "url": url, "created_at": now, "updated_at": now}
        return int(conn.execute(q.new_story, row).scalar_one())

    def _body_contradicts(
        self,
        conn: Connection,
        fp: Fingerprint,
        story_id: int,
        cutoff: float,
        batch: StoryBatch | None = None,
    ) -> bool:
        """A weak key (title, rel=canonical) matched: do the bodies say it is another story?

        The story's newest 20 signatures: the batch's unwritten articles are the newest."""
        if fp.minhash is None:
            return False
        sigs = batch.signatures(story_id) if batch is not None else []
        if story_id > 0 and len(sigs) < _SIGS:
            q = _queries(conn.dialect.name)
            rows = conn.execute(q.story_sigs, {"story": story_id, "cutoff": cutoff}).scalars()
            sigs += [blob for blob in rows if blob is not None][: _SIGS - len(sigs)]
        return bool(sigs) and all(self.index.contradicts(fp.minhash, blob) for blob in sigs)

    def _text_match(
        self,
        conn: Connection,
        fp: Fingerprint,
        cutoff: float,
        site: str,
        batch: StoryBatch | None = None,
    ) -> tuple[float, int] | None:
        """The most similar story among the LSH candidates, verified on stored signatures.

        Candidates are taken in the order of their article (stored ones, then the batch's), so
        of two equally similar stories the older article's wins, on every database."""
        assert fp.minhash is not None
        if batch is not None:
            rows = batch.candidates(fp.bands)
        else:
            rows = [row for _, row in self._band_rows(conn, fp.bands, cutoff)]
        best: tuple[float, int] | None = None
        checked: set[int] = set()
        for row in rows:
            if row.minhash is None or row.article_id in checked:
                continue
            checked.add(row.article_id)
            same_site = bool(site) and site_of(row.url) == site
            same, sim = self.index.same_text(fp.minhash, row.minhash, same_site=same_site)
            if same and (best is None or sim > best[0]):
                best = (sim, int(row.story_id))
        return best

    def _known_keys(self, conn: Connection, keys: Sequence[str], cutoff: float) -> dict[str, int]:
        """The story of each of `keys` that was seen at or after `cutoff`."""
        rows = _in_rows(conn, "keys", keys, {"cutoff": cutoff})
        return {str(key): int(story_id) for key, story_id in rows}

    def _band_rows(
        self, conn: Connection, bands: Sequence[int], cutoff: float
    ) -> list[tuple[int, _Held]]:
        """The stored LSH candidates of `bands` (within the window), as (band, candidate) in
        article order; an article that shares several bands appears once per band.

        Two queries, the bands' articles and then each article once: joined in one, every
        band of a duplicate brought its article's 1 KB signature again (2,000 articles from
        285 distinct pages fetched 246,000 rows in 1.1 s of the writer's CPU)."""
        pairs = _in_rows(conn, "band_rows", bands, {"cutoff": cutoff})
        ids = list(dict.fromkeys(article_id for _, article_id, _ in pairs))
        found = {row[0]: row[1:] for row in _in_rows(conn, "band_articles", ids, {})}
        held: dict[tuple[int, int], _Held] = {}  # one candidate per article (and story)
        rows: list[tuple[int, _Held]] = []
        for band, article_id, story_id in pairs:
            if article_id not in found:  # deleted between the two reads (retention elsewhere)
                continue
            row = held.get((article_id, story_id))
            if row is None:
                row = held[article_id, story_id] = _Held(article_id, story_id, *found[article_id])
            rows.append((band, row))
        rows.sort(key=lambda r: r[1].article_id)
        return rows

    def batch(
        self, conn: Connection, fingerprints: Sequence[Fingerprint], now: float
    ) -> StoryBatch:
        """Assign and remember several articles in one transaction with fewer statements."""
        return StoryBatch(self, conn, fingerprints, now)

    def remember(
        self, conn: Connection, fp: Fingerprint, *, story_id: int, article_id: int, now: float
    ) -> None:
        """Index the article's keys and bands under its story (inside the same transaction)."""
        q = _queries(conn.dialect.name)
        if fp.keys:
            rows = [{"key": key, "story_id": story_id, "seen_at": now} for _, key in fp.keys]
            conn.execute(q.upsert_keys, rows)
        if fp.bands:
            conn.execute(
                q.add_bands,
                [
                    {"band": b, "article_id": article_id, "story_id": story_id, "seen_at": now}
                    for b in fp.bands
                ],
            )
        conn.execute(q.touch_story, {"story": story_id, "now": now})

    def prune(self, conn: Connection, now: float) -> int:
        """Delete keys and bands last seen before the window; returns how many rows went.

        `assign` never looks at them (it only reads rows seen within the window), so pruning
        cannot make a known story new. The feed + GUID rows of the articles table, which stop a
        re-sent entry, are not touched.
        """
        cutoff = now - self.index.window
        gone = conn.execute(delete(s.story_keys).where(s.story_keys.c.seen_at < cutoff)).rowcount
        gone += conn.execute(delete(s.story_bands).where(s.story_bands.c.seen_at < cutoff)).rowcount
        # Fresh statistics for the tables every commit looks up (PostgreSQL).
        analyse(conn, "story_keys", "story_bands", "stories")
        return int(gone)


_PG_STORY = (("title", "text"), ("url", "text"), ("created_at", "float8"), ("updated_at", "float8"))
_PG_NEW_STORIES = unnest_insert("stories", _PG_STORY, "RETURNING id")
_PG_BAND = (
    ("band", "bigint"),
    ("article_id", "integer"),
    ("story_id", "integer"),
    ("seen_at", "float8"),
)
_PG_ADD_BANDS = unnest_insert("story_bands", _PG_BAND)
_PG_KEY = (("key", "text"), ("story_id", "integer"), ("seen_at", "float8"))
# The keys of one commit are distinct (a dict), as one ON CONFLICT DO UPDATE requires.
_PG_UPSERT_KEYS = unnest_insert(
    "story_keys",
    _PG_KEY,
    "ON CONFLICT (key) DO UPDATE SET story_id = excluded.story_id, seen_at = excluded.seen_at",
)
_PG_TOUCH = text("UPDATE stories SET updated_at = :now WHERE id = ANY(CAST(:ids AS integer[]))")
#: How many of a story's newest signatures a weak key's match is checked against.
_SIGS = 20


class _Held(NamedTuple):
    """An article of the batch, not written yet, as an LSH candidate row."""

    article_id: int  # its place in the batch, negative: after every stored article
    story_id: int
    minhash: bytes | None
    url: str


def story_locks(fingerprints: Sequence[Fingerprint]) -> list[int]:
    """The advisory lock numbers (32-bit) of these articles' story keys and LSH bands.

    Two transactions that could decide the same story share one of them: the same key, or a
    band a near-duplicate shares. A collision of two numbers only serialises two unrelated
    decisions. Keys are hex digests (`monitor.stories._key`); a band is a signed 64-bit hash.
    """
    found: set[int] = set()
    for fp in fingerprints:
        for _, key in fp.keys:
            found.add(_int32(int(key[2:10], 16)))
        for band in fp.bands:
            found.add(_int32((band ^ (band >> 32)) & 0xFFFFFFFF))
    return sorted(found)


#: The story locks of a transaction (PostgreSQL), all taken by one statement in the order
#: given (a function scan of the array, row by row).
_LOCK = text("SELECT count(pg_advisory_xact_lock(:space, k)) FROM unnest(CAST(:keys AS int[])) k")


def take_story_locks(conn: Connection, locks: Collection[int]) -> None:
    """Hold these story locks until the transaction ends, taken in ascending order: two
    transactions that take all theirs this way, before anything else, cannot deadlock on
    them. Nothing on SQLite, whose writers are serial."""
    if locks and conn.dialect.name == "postgresql":
        conn.execute(_LOCK, {"space": LOCKS["stories"], "keys": sorted(locks)})


class _Growth:
    """Articles this process stored through one engine, and when to refresh statistics."""

    def __init__(self) -> None:
        self.stored = 0
        self.next = _FIRST_ANALYSE
        self.lock = threading.Lock()


#: Statistics of the story tables are refreshed when this process has stored this many
#: articles, then each time four times as many (PostgreSQL).
_FIRST_ANALYSE = 200
_GROWTH: weakref.WeakKeyDictionary[Engine, _Growth] = weakref.WeakKeyDictionary()
_GROWTH_GUARD = threading.Lock()


def grew(conn: Connection, stored: int) -> None:
    """Count `stored` new articles towards the next refresh of statistics (PostgreSQL)."""
    if stored and conn.dialect.name == "postgresql":
        with _GROWTH_GUARD:
            growth = _GROWTH.setdefault(conn.engine, _Growth())
        with growth.lock:
            growth.stored += stored


def refresh_statistics(engine: Engine) -> bool:
    """ANALYZE the tables each commit looks up once they have grown enough (PostgreSQL).

    A new database is analysed empty (`engine.migrate`), and PostgreSQL keeps the plans of
    its foreign-key checks per connection: with the statistics of empty tables, each
    article's check of its story was a sequential scan of `stories` (27 million rows read
    for 6,000 articles, measured with bench/bench_nodes.py) until autovacuum came by.
    Fresh statistics make every connection plan them again. Run outside any transaction
    of the writer (ANALYZE's lock would otherwise be held until its commit). Returns
    whether it ran."""
    growth = _GROWTH.get(engine)
    if growth is None:
        return False
    with growth.lock:
        if growth.stored < growth.next:
            return False
        growth.next = growth.stored * 4
    with engine.begin() as conn:
        analyse(conn, "stories", "articles", "story_keys", "story_bands", "matches")
    return True


def _int32(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


class StoryBatch:
    """`assign` + `remember` for the articles of one transaction, with the same decisions,
    in a fixed number of statements whatever the number of articles.

    Up front, one query finds every article's keys and one its LSH candidates. Decisions are
    then taken in order in memory: an article sees the ones before it through the overlay
    (`known` for keys, `_held` for signatures and bands), exactly as it would have seen them
    written: inside the transaction only the decisions read `story_keys`, `story_bands` and
    the signatures, a remembered key or band is within the window (its `seen_at` is `now`),
    and the held articles are newer than any stored one. A new story is reserved (a negative
    id) and written with the others by `write_stories`; `flush` writes the keys, bands and
    story touches (one multi-row statement each) once the articles have ids. Both must run
    before the transaction commits.
    """

    def __init__(
        self, repo: StoryRepo, conn: Connection, fingerprints: Sequence[Fingerprint], now: float
    ) -> None:
        self.repo, self.conn, self.now = repo, conn, now
        cutoff = now - repo.index.window
        wanted = list(dict.fromkeys(k for fp in fingerprints for _, k in fp.keys))
        self.known = repo._known_keys(conn, wanted, cutoff) if wanted else {}
        self._looked_up = set(wanted)  # keys whose absence from `known` is an answer
        bands = list(dict.fromkeys(b for fp in fingerprints for b in fp.bands))
        self._by_band: dict[int, list[Any]] = {}
        for band, row in repo._band_rows(conn, bands, cutoff) if bands else ():
            self._by_band.setdefault(band, []).append(row)
        self._banded = set(bands)
        self._keys: dict[str, int] = {}  # key -> story: the last remembered wins, as upserts do
        self._touched: dict[int, None] = {}
        self._reserved: list[tuple[str, str]] = []  # new stories: (title, url), id -(i + 1)
        self._held: list[tuple[Fingerprint, int]] = []  # remembered articles: (fp, story)
        self._held_bands: dict[int, list[_Held]] = {}
        self._sigs: dict[int, list[bytes]] = {}  # story -> held signatures, newest last
        self._resolved: dict[int, int] = {}
        self._article_ids: list[int] = []
        self._urls: dict[int, str] = {}  # id(fingerprint) -> the URL it was assigned with

    def assign(self, fp: Fingerprint, *, title: str, url: str) -> tuple[int, str, bool]:
        """The article's story: (story id, reason, new). A new story's id is negative until
        `write_stories`; `resolve` turns it into the stored one."""
        missing = [k for _, k in fp.keys if k not in self.known and k not in self._looked_up]
        if missing:  # a fingerprint not given to the constructor
            self.known.update(
                self.repo._known_keys(self.conn, missing, self.now - self.repo.index.window)
            )
            self._looked_up.update(missing)
        unbanded = [b for b in fp.bands if b not in self._banded]
        if unbanded:
            cutoff = self.now - self.repo.index.window
            for band, row in self.repo._band_rows(self.conn, unbanded, cutoff):
                self._by_band.setdefault(band, []).append(row)
            self._banded.update(unbanded)
        self._urls[id(fp)] = url
        return self.repo.assign(
            self.conn, fp, title=title, url=url, now=self.now, known=self.known, batch=self
        )

    def reserve(self, title: str, url: str) -> int:
        self._reserved.append((title, url))
        return -len(self._reserved)

    def candidates(self, bands: Sequence[int]) -> list[Any]:
        """LSH candidates of `bands`: stored rows in article order, then the held articles."""
        stored: list[Any] = []
        held: list[_Held] = []
        for band in dict.fromkeys(bands):
            stored += self._by_band.get(band, ())
            held += self._held_bands.get(band, ())
        stored.sort(key=lambda r: r.article_id)
        held.sort(key=lambda r: -r.article_id)
        return stored + held

    def signatures(self, story_id: int) -> list[bytes]:
        """The held articles' signatures of a story, newest first (at most `_SIGS`)."""
        return self._sigs.get(story_id, [])[::-1][:_SIGS]

    def remember(self, fp: Fingerprint, *, story_id: int, article_id: int = 0) -> None:
        """Hold the article (in order) until `flush`; its keys and bands count from now on.
        `article_id` is ignored: `written` gives the ids of the held articles, in order. Its
        URL (for later same-site text checks) is the one `assign` was given with `fp`."""
        url = self._urls.pop(id(fp), "")
        for _, key in fp.keys:
            self.known[key] = story_id
            self._keys.pop(key, None)  # keep dict order = order of the last write
            self._keys[key] = story_id
        self._held.append((fp, story_id))
        if fp.minhash is not None:
            self._sigs.setdefault(story_id, []).append(fp.minhash)
            if fp.bands:
                row = _Held(-len(self._held), story_id, fp.minhash, url)
                for band in fp.bands:
                    self._held_bands.setdefault(band, []).append(row)
        if story_id > 0:  # a new story's updated_at is `now` when written
            self._touched[story_id] = None

    def write_stories(self) -> None:
        """Write the reserved stories (one statement); their ids are then `resolve`d."""
        if not self._reserved:
            return
        rows = [(title, url, self.now, self.now) for title, url in self._reserved]
        if self.conn.dialect.name == "sqlite":
            cur = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            ids = []
            for row in rows:
                cur.execute(_SQLITE_NEW_STORY, row)
                ids.append(int(cur.lastrowid))
        else:
            result = self.conn.execute(_PG_NEW_STORIES, arrays(_PG_STORY, rows))
            ids = [int(i) for i in result.scalars()]
        self._resolved = {-(i + 1): sid for i, sid in enumerate(ids)}
        self._reserved.clear()

    def resolve(self, story_id: int) -> int:
        return self._resolved.get(story_id, story_id)

    def written(self, article_ids: Sequence[int]) -> None:
        """The ids the remembered articles were stored under, in order (before `flush`)."""
        self._article_ids = list(article_ids)

    def flush(self) -> None:
        """Write the held articles' keys and bands (once `written`) and the story touches,
        in the same transaction."""
        if self._reserved:
            self.write_stories()
        res = self.resolve
        bands = []
        article_ids = self._article_ids
        if self._held and any(fp.bands for fp, _ in self._held):
            assert len(article_ids) == len(self._held)
            bands = [
                (b, aid, res(sid), self.now)
                for (fp, sid), aid in zip(self._held, article_ids, strict=True)
                for b in fp.bands
            ]
        keys = [(k, res(sid), self.now) for k, sid in self._keys.items()]
        touched = [(self.now, sid) for sid in sorted(self._touched)]  # one lock order
        if self.conn.dialect.name == "sqlite":
            _write_sqlite(self.conn, bands, keys, touched)
        else:
            _write_pg(self.conn, bands, keys, touched, self.now)
        self._keys.clear()
        self._touched.clear()
        self._held.clear()
        self._held_bands.clear()
        self._sigs.clear()
        self._article_ids = []


def _write_sqlite(
    conn: Connection, bands: list[Any], keys: list[Any], touched: list[tuple[float, int]]
) -> None:
    """SQLite's own cursor: SQLAlchemy's per-row parameter handling of an executemany cost
    more than the statements (the commit runs under the process's write lock)."""
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    if bands:
        cur.executemany(_SQLITE_ADD_BANDS, bands)
    if keys:
        cur.executemany(_SQLITE_UPSERT_KEYS, keys)
    if touched:
        cur.executemany(_SQLITE_TOUCH_STORY, touched)


def _write_pg(
    conn: Connection,
    bands: list[Any],
    keys: list[Any],
    touched: list[tuple[float, int]],
    now: float,
) -> None:
    """One statement each, whatever the number of rows (`engine.unnest_insert`)."""
    if bands:
        conn.execute(_PG_ADD_BANDS, arrays(_PG_BAND, bands))
    if keys:
        conn.execute(_PG_UPSERT_KEYS, arrays(_PG_KEY, keys))
    if touched:
        conn.execute(_PG_TOUCH, {"now": now, "ids": [sid for _, sid in touched]})


@dataclass(frozen=True, slots=True)
class _Queries:
    """Statements built once per dialect: building SQLAlchemy statements per article cost more
    than running them."""

    keys: Select[tuple[str, int]]
    band_rows: Select[tuple[int, int, int]]
    band_articles: Select[tuple[int, bytes | None, str]]
    story_sigs: Select[tuple[bytes | None]]
    new_story: ReturningInsert[tuple[int]]
    upsert_keys: Insert
    add_bands: Insert
    touch_story: Update


#: The lookups `_in_rows` runs: SQL on SQLite (its IN list written per call) and the statement
#: of `_Queries` with the same name elsewhere. On SQLite the IN list's values come first, then
#: the other parameters in their order.
_SQLITE_IN = {
    "keys": "SELECT key, story_id FROM story_keys WHERE key IN ({}) AND seen_at >= ?",
    "band_rows": "SELECT band, article_id, story_id FROM story_bands"
    " WHERE band IN ({}) AND seen_at >= ?",
    "band_articles": "SELECT id, minhash, url FROM articles WHERE id IN ({})",
}
_IN_PARAM = {"keys": "keys", "band_rows": "bands", "band_articles": "ids"}


def _in_rows(
    conn: Connection, lookup: str, values: Sequence[Any], params: dict[str, Any]
) -> list[tuple[Any, ...]]:
    """The rows of lookup `lookup` for every one of `values`, in IN lists of at most 500.

    On SQLite through its own cursor, as plain tuples: SQLAlchemy's rows and its expanding IN
    cost ~3 us a row, which is most of the time when a batch's LSH bands bring back
    hundreds of thousands of (band, article) rows."""
    rows: list[tuple[Any, ...]] = []
    sqlite = conn.dialect.name == "sqlite"
    for i in range(0, len(values), 500):
        chunk = list(values[i : i + 500])
        if sqlite:
            cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            sql = _SQLITE_IN[lookup].format(", ".join("?" * len(chunk)))
            rows += cur.execute(sql, [*chunk, *params.values()]).fetchall()
        else:
            stmt = getattr(_queries(conn.dialect.name), lookup)
            rows += conn.execute(stmt, {**params, _IN_PARAM[lookup]: chunk}).tuples()
    return rows


@functools.cache
def _queries(dialect: str) -> _Queries:
    k, b, a = s.story_keys.c, s.story_bands.c, s.articles.c
    cutoff: BindParameter[float] = bindparam("cutoff")
    upsert: Any = sqlite_insert
    if dialect == "postgresql":  # imported here: the dialect costs SQLite start-up ~30 ms
        from sqlalchemy.dialects.postgresql import insert as upsert
    keys_insert = upsert(s.story_keys)
    return _Queries(
        keys=select(k.key, k.story_id).where(
            k.key.in_(bindparam("keys", expanding=True)), k.seen_at >= cutoff
        ),
        band_rows=select(b.band, b.article_id, b.story_id).where(
            b.band.in_(bindparam("bands", expanding=True)), b.seen_at >= cutoff
        ),
        band_articles=select(a.id, a.minhash, a.url).where(
            a.id.in_(bindparam("ids", expanding=True))
        ),
        story_sigs=select(a.minhash)
        .where(a.story_id == bindparam("story"), a.fetched_at >= cutoff, a.minhash.is_not(None))
        .order_by(a.id.desc())
        .limit(20),
        new_story=insert(s.stories).returning(s.stories.c.id),
        upsert_keys=keys_insert.on_conflict_do_update(
            index_elements=["key"],
            set_={
                "story_id": keys_insert.excluded.story_id,
                "seen_at": keys_insert.excluded.seen_at,
            },
        ),
        add_bands=insert(s.story_bands),
        touch_story=update(s.stories)
        .where(s.stories.c.id == bindparam("story"))
        .values(updated_at=bindparam("now")),
    )
