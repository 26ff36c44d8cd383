"""The store side of story identity: assign an article to a story, remember its keys and
bands, prune what left the window, and do it for a whole poll at once (`StoryBatch`).

`monitor.stories` holds the pure part (canonical URLs, titles, MinHash fingerprints and their
comparison), which the parse workers import without SQLAlchemy; `StoryRepo` runs its queries
inside the caller's transaction, so an article, its story and its alerts commit together.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Insert, Select, Update, bindparam, delete, insert, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.dml import ReturningInsert
from sqlalchemy.sql.elements import BindParameter

from monitor.store import schema as s
from monitor.store.engine import analyse
from monitor.stories import Fingerprint, StoryIndex, site_of

_SQLITE_NEW_STORY = "INSERT INTO stories (title, url, created_at, updated_at) VALUES (?, ?, ?, ?)"
_SQLITE_UPSERT_KEYS = (
    "INSERT INTO story_keys (key, story_id, seen_at) VALUES (?, ?, ?) ON CONFLICT (key) "
    "DO UPDATE SET story_id = excluded.story_id, seen_at = excluded.seen_at"
)
_SQLITE_TOUCH_STORY = "UPDATE stories SET updated_at = ? WHERE id = ?"


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
    ) -> tuple[int, str, bool]:
        """Find or create the story of an article. Returns (story_id, reason, is_new).

        `known` (from `StoryBatch`) stands in for the key lookup: it must hold what that query
        would return for every key of `fp`, i.e. each key seen within the window and its story.
        """
        q = _queries(conn.dialect.name)
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
                if reason == "url" or not self._body_contradicts(conn, fp, story_id, cutoff):
                    return story_id, reason, False
        if fp.bands and fp.minhash is not None:
            best = self._text_match(conn, fp.minhash, fp.bands, cutoff, site=site_of(url))
            if best is not None:
                return best[1], f"text~{best[0]:.2f}", False
        if conn.dialect.name == "sqlite":
            # SQLite's own cursor: SQLAlchemy's overhead was most of this INSERT's cost.
            cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            cur.execute(_SQLITE_NEW_STORY, (title, url, now, now))
            return int(cur.lastrowid), "new", True
        story_id = conn.execute(
            q.new_story, {"title": title, "url": url, "created_at": now, "updated_at": now}
        ).scalar_one()
        return int(story_id), "new", True

    def _body_contradicts(
        self, conn: Connection, fp: Fingerprint, story_id: int, cutoff: float
    ) -> bool:
        """A weak key (title, rel=canonical) matched: do the bodies say it is another story?"""
        if fp.minhash is None:
            return False
        q = _queries(conn.dialect.name)
        sigs = [
            blob
            for blob in conn.execute(q.story_sigs, {"story": story_id, "cutoff": cutoff}).scalars()
            if blob is not None
        ]
        return bool(sigs) and all(self.index.contradicts(fp.minhash, blob) for blob in sigs)

    def _text_match(
        self, conn: Connection, minhash: bytes, bands: Sequence[int], cutoff: float, site: str
    ) -> tuple[float, int] | None:
        """The most similar story among the LSH candidates, verified on stored signatures."""
        q = _queries(conn.dialect.name)
        best: tuple[float, int] | None = None
        checked: set[int] = set()
        for row in conn.execute(q.candidates, {"bands": list(bands), "cutoff": cutoff}):
            if row.minhash is None or row.article_id in checked:
                continue
            checked.add(row.article_id)
            same_site = bool(site) and site_of(row.url) == site
            same, sim = self.index.same_text(minhash, row.minhash, same_site=same_site)
            if same and (best is None or sim > best[0]):
                best = (sim, int(row.story_id))
        return best

    def _known_keys(self, conn: Connection, keys: Sequence[str], cutoff: float) -> dict[str, int]:
        """The story of each of `keys` that was seen at or after `cutoff`."""
        q = _queries(conn.dialect.name)
        found: dict[str, int] = {}
        sqlite = conn.dialect.name == "sqlite"
        for i in range(0, len(keys), 500):  # bounded IN lists
            chunk = list(keys[i : i + 500])
            if sqlite:  # SQLite's own cursor: cheaper than SQLAlchemy's expanding IN
                cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
                marks = ", ".join("?" * len(chunk))
                sql = (
                    f"SELECT key, story_id FROM story_keys WHERE key IN ({marks}) AND seen_at >= ?"
                )
                for key, story_id in cur.execute(sql, [*chunk, cutoff]):
                    found[str(key)] = int(story_id)
                continue
            for r in conn.execute(q.keys, {"keys": chunk, "cutoff": cutoff}):
                found[str(r.key)] = int(r.story_id)
        return found

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


class StoryBatch:
    """`assign` + `remember` for the articles of one transaction, with the same decisions.

    The key lookup of every article is one query up front, and the keys and story touches
    that `remember` writes are kept here and written by `flush` (one executemany each) instead
    of per article. That is exact, not approximate: inside the transaction only `assign`'s key
    lookup reads `story_keys`, and a remembered key is always within the window (its `seen_at`
    is `now`), so the overlay `known` answers every later lookup exactly as the table would.
    Nothing reads `stories.updated_at` inside the transaction. LSH bands are still written per
    article: a later article's text match reads them (with the articles) straight away.
    `flush` must run before the transaction commits.
    """

    def __init__(
        self, repo: StoryRepo, conn: Connection, fingerprints: Sequence[Fingerprint], now: float
    ) -> None:
        self.repo, self.conn, self.now = repo, conn, now
        index = repo.index
        wanted = list(dict.fromkeys(k for fp in fingerprints for _, k in fp.keys))
        self.known = repo._known_keys(conn, wanted, now - index.window) if wanted else {}
        self._looked_up = set(wanted)  # keys whose absence from `known` is an answer
        self._keys: dict[str, int] = {}  # key -> story: the last remembered wins, as upserts do
        self._touched: dict[int, None] = {}
        # Stories this batch opened: their updated_at is already `now` (set by the INSERT).
        self._opened: set[int] = set()

    def assign(self, fp: Fingerprint, *, title: str, url: str) -> tuple[int, str, bool]:
        missing = [k for _, k in fp.keys if k not in self.known and k not in self._looked_up]
        if missing:  # a fingerprint not given to the constructor
            self.known.update(
                self.repo._known_keys(self.conn, missing, self.now - self.repo.index.window)
            )
            self._looked_up.update(missing)
        story_id, reason, new = self.repo.assign(
            self.conn, fp, title=title, url=url, now=self.now, known=self.known
        )
        if new:
            self._opened.add(story_id)
        return story_id, reason, new

    def remember(self, fp: Fingerprint, *, story_id: int, article_id: int) -> None:
        for _, key in fp.keys:
            self.known[key] = story_id
            self._keys.pop(key, None)  # keep dict order = order of the last write
            self._keys[key] = story_id
        if fp.bands:
            q = _queries(self.conn.dialect.name)
            self.conn.execute(
                q.add_bands,
                [
                    {"band": b, "article_id": article_id, "story_id": story_id, "seen_at": self.now}
                    for b in fp.bands
                ],
            )
        if story_id not in self._opened:  # a new story's updated_at is already `now`
            self._touched[story_id] = None

    def flush(self) -> None:
        """Write the remembered keys and story touches (inside the same transaction)."""
        if self.conn.dialect.name == "sqlite":
            # SQLite's own cursor: SQLAlchemy's per-row parameter handling of an executemany
            # cost more than the statements (the commit runs under the process's write lock).
            cur = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            if self._keys:
                cur.executemany(
                    _SQLITE_UPSERT_KEYS, [(k, sid, self.now) for k, sid in self._keys.items()]
                )
            if self._touched:
                cur.executemany(_SQLITE_TOUCH_STORY, [(self.now, sid) for sid in self._touched])
            self._keys.clear()
            self._touched.clear()
            return
        q = _queries(self.conn.dialect.name)
        if self._keys:
            self.conn.execute(
                q.upsert_keys,
                [{"key": k, "story_id": sid, "seen_at": self.now} for k, sid in self._keys.items()],
            )
        if self._touched:
            self.conn.execute(
                q.touch_story, [{"story": sid, "now": self.now} for sid in self._touched]
            )
        self._keys.clear()
        self._touched.clear()


@dataclass(frozen=True, slots=True)
class _Queries:
    """Statements built once per dialect: building SQLAlchemy statements per article cost more
    than running them."""

    keys: Select[tuple[str, int]]
    candidates: Select[tuple[int, int, bytes | None, str]]
    story_sigs: Select[tuple[bytes | None]]
    new_story: ReturningInsert[tuple[int]]
    upsert_keys: Insert
    add_bands: Insert
    touch_story: Update


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
        candidates=select(b.article_id, b.story_id, a.minhash, a.url)
        .join(s.articles, s.articles.c.id == b.article_id)
        .where(b.band.in_(bindparam("bands", expanding=True)), b.seen_at >= cutoff),
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
