"""Story grouping: precision and recall on labelled real text, and the cost per article.

    python bench/bench_stories.py            # both parts (about a minute)
    python bench/bench_stories.py --stories 20000   # a smaller store for the cost part

Part 1, quality. Every article goes through the real commit path (`ArticleRepo.commit` on a SQLite
store, default `StoryIndex`), in one window, and the grouping is scored pairwise against labels:
  * scrapinghub-aeb: each ground-truth articleBody (>= 150 words) is an original; eight syndicated
    copies are made from it as wire copies really differ: trimmed to 60 % and to 35 % (the end
    cut), only the first 15 % (a lead-only brief, expected to be missed), lead
    paragraph replaced by another article's first paragraph (rewritten lead), another article's
    paragraph inserted in the middle, 7 % of words replaced (copy-editing), another outlet's
    boilerplate appended, and all of trim 75 % + 5 % replaced + boilerplate. Copies have their own
    outlet URL (with utm parameters) and no shared title, so only the text layer can join them.
    Labels: an original and its copies are one story; any two originals are different stories
    (the aeb set has several same-topic pairs, e.g. two my6sense posts, two WeWork reports).
  * AG News (train subset; never test.csv): 1,000 World/Business items, title + description as
    published, each its own story and each from its own site (AG News aggregates many outlets);
    they are committed with their real titles, so the URL, title and text layers all play
    (text layer at min_words=20 here instead of 100, since descriptions are short).
    Same-subject items (Iraq bombings, oil prices) overlap heavily in words.
  * Furniture: 300 different AG News briefs, each with the same ~130-word block glued into its
    text (a "More from Local Daily" list of 8 headlines and a copyright/newsletter footer, as a
    careless extraction keeps them), all from one site, then each from its own site. Every join
    is a false merge.
Part 2, cost. A store with N stories already in the window (synthetic rows inserted with
executemany: stories, articles with random signatures, 2 keys and 42 bands per story), then 300
real aeb articles as new stories: fingerprint, assign and remember timed separately, and the
whole `ArticleRepo.commit` (with its fsync) for reference.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.models import Article
from monitor.store import FeedSpec, Store
from monitor.store import schema as s
from monitor.store.engine import write_tx
from monitor.store.stories import StoryBatch, StoryRepo
from monitor.stories import Fingerprint, StoryIndex

# The corpora folder: $MONITOR_CORPORA, else ../shared/corpora beside the checkout.
CORPORA = Path(
    os.environ.get("MONITOR_CORPORA") or Path(__file__).resolve().parents[2] / "shared" / "corpora"
)
NOW = 1_700_000_000.0
BOILERPLATE = (
    "Copyright 2023 The Local Daily. All rights reserved. This material may not be published, "
    "broadcast, rewritten or redistributed without permission. Sign up for our morning "
    "newsletter to get the day's top stories delivered to your inbox, and follow us on "
    "Facebook and Twitter for breaking news alerts from our newsroom."
)


def aeb_bodies() -> list[tuple[str, str]]:
    truth = json.loads((CORPORA / "articles/scrapinghub-aeb/ground-truth.json").read_text())
    return [
        (v["url"], v["articleBody"]) for v in truth.values() if len(v["articleBody"].split()) >= 150
    ]


def ag_items(n: int) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    with (CORPORA / "news/ag_news/train_subset.csv").open(encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if r["class_index"] in ("1", "3") and not r["same_text_as_test_row"]:
                rows.append(r["text"])  # type: ignore[arg-type]
    random.Random(7).shuffle(rows)
    items = []
    for text in rows[:n]:
        # AG News joins title and description with a space; the description usually opens with
        # an upper-case dateline ("BAGHDAD, Iraq --"): cut there, else after eight words.
        words = text.split()
        cut = next((i for i, w in enumerate(words[3:12], 3) if w.isupper() and len(w) > 2), 8)
        items.append((" ".join(words[:cut]), " ".join(words[cut:])))
    return items[:n]


def variants(body: str, others: list[str], rng: random.Random) -> dict[str, str]:
    paras = [p for p in body.split("\n") if p.strip()]
    words = body.split()
    other = rng.choice(others)
    other_paras = [p for p in other.split("\n") if p.strip()]

    def replace(ws: list[str], share: float) -> list[str]:
        out = list(ws)
        vocab = other.split()
        for i in rng.sample(range(len(out)), int(len(out) * share)):
            out[i] = rng.choice(vocab)
        return out

    def trim(share: float) -> list[str]:
        return words[: int(len(words) * share)]

    lead = other_paras[0] if other_paras else other[:300]
    middle = len(paras) // 2
    return {
        "trimmed 60%": " ".join(trim(0.6)),
        "trimmed 35%": " ".join(trim(0.35)),
        "lead only (first 15%)": " ".join(trim(0.15)),
        "lead rewritten": "\n".join([lead, *paras[1:]]),
        "paragraph added": "\n".join([*paras[:middle], rng.choice(other_paras), *paras[middle:]]),
        "7% words changed": " ".join(replace(words, 0.07)),
        "boilerplate appended": body + "\n" + BOILERPLATE,
        "trim 75%+5%+boilerplate": " ".join(replace(trim(0.75), 0.05)) + " " + BOILERPLATE,
    }


def _store(directory: str, name: str) -> tuple[Store, int]:
    st = Store(f"sqlite:///{directory}/{name}.db")
    st.feeds.sync([FeedSpec("https://bench.example/feed", "bench", False)], NOW)
    with write_tx(st.engine) as conn:
        feed_id = int(conn.execute(s.feeds.select()).first().id)  # type: ignore[union-attr]
    return st, feed_id


def quality(directory: str) -> list[tuple[str, str, str, str]]:
    rng = random.Random(42)
    originals = aeb_bodies()
    bodies = [b for _, b in originals]
    st, feed_id = _store(directory, "quality")
    idx = StoryIndex(window=72 * 3600)
    label: dict[int, str] = {}  # article id -> true story
    kind: dict[int, str] = {}
    story: dict[int, int] = {}
    n = 0

    def commit(article: Article, truth: str, what: str, index: StoryIndex) -> None:
        nonlocal n
        n += 1
        [r] = st.articles.commit(
            [(article, index.fingerprint(article), [], None)],
            feed_id=feed_id,
            stories=index,
            now=NOW + n,
        )
        assert r.article_id is not None and r.story_id is not None
        label[r.article_id], kind[r.article_id], story[r.article_id] = truth, what, r.story_id

    for i, (url, body) in enumerate(originals):
        commit(Article(feed="bench", guid=f"o{i}", url=url, body=body), f"aeb{i}", "original", idx)
    for i, (_, body) in enumerate(originals):
        for j, (what, text) in enumerate(variants(body, bodies[:i] + bodies[i + 1 :], rng).items()):
            copy_url = f"https://outlet{j}.example/news/{i}-{j}?utm_source=rss&utm_medium=feed"
            commit(
                Article(feed="bench", guid=f"v{i}-{j}", url=copy_url, body=text),
                f"aeb{i}",
                what,
                idx,
            )
    aeb_ids = list(label)
    ag_idx = StoryIndex(window=72 * 3600, min_words=20)
    for i, (title, desc) in enumerate(ag_items(1000)):
        commit(
            Article(
                feed="bench",
                guid=f"ag{i}",
                url=f"https://ag{i}.example/news",
                title=title,
                body=desc,
            ),
            f"ag{i}",
            "AG News item",
            ag_idx,
        )
    ag_ids = [a for a in label if a not in set(aeb_ids)]
    st.close()

    rows: list[tuple[str, str, str, str]] = []
    by_kind: dict[str, list[bool]] = defaultdict(list)
    first_of = {label[a]: a for a in aeb_ids if kind[a] == "original"}
    for a in aeb_ids:
        if kind[a] != "original":
            by_kind[kind[a]].append(story[a] == story[first_of[label[a]]])
    for what, joined in by_kind.items():
        rows.append(
            (
                "aeb copy joins its original",
                what,
                f"{sum(joined)}/{len(joined)}",
                f"{sum(joined) / len(joined):.1%}",
            )
        )
    for name, ids in (("aeb (originals + copies)", aeb_ids), ("AG News items", ag_ids)):
        tp = fp = fn = 0
        for a, b in combinations(ids, 2):
            same, grouped = label[a] == label[b], story[a] == story[b]
            tp += same and grouped
            fp += grouped and not same
            fn += same and not grouped
        pairs = len(ids) * (len(ids) - 1) // 2
        if tp + fn:
            rows.append(
                (
                    f"pairwise grouping, {name}",
                    f"{len(ids)} articles",
                    f"precision {tp / (tp + fp):.4f}",
                    f"recall {tp / (tp + fn):.4f}",
                )
            )
        else:  # every item is its own story: only false merges can happen
            rows.append(
                (
                    f"pairwise grouping, {name}",
                    f"{len(ids)} articles",
                    f"{fp} of {pairs:,} pairs merged",
                    "",
                )
            )
    merged_originals = sum(
        1
        for a, b in combinations([x for x in aeb_ids if kind[x] == "original"], 2)
        if story[a] == story[b]
    )
    rows.append(
        (
            "different aeb originals merged",
            f"{len(originals)} originals",
            f"{merged_originals} pairs",
            "",
        )
    )
    return rows


def furniture(directory: str) -> list[tuple[str, str, str, str]]:
    """Different short stories carrying the same site furniture glued into their text."""
    items = ag_items(400)
    related = "More from Local Daily: " + ". ".join(t for t, _ in items[-8:]) + ". "
    rows = []
    for where in ("one site", "a site each"):
        st, feed_id = _store(directory, f"furniture-{where[0]}")
        idx = StoryIndex(window=72 * 3600)
        stories, signed = set(), 0
        for i, (title, desc) in enumerate(items[:300]):
            host = "local.example" if where == "one site" else f"local{i}.example"
            article = Article(
                feed="bench",
                guid=f"f{i}",
                url=f"https://{host}/n/{i}",
                title=title,
                body=f"{desc} {related}{BOILERPLATE}",
            )
            fp = idx.fingerprint(article)
            signed += fp.minhash is not None
            [r] = st.articles.commit(
                [(article, fp, [], None)], feed_id=feed_id, stories=idx, now=NOW + i
            )
            stories.add(r.story_id)
        st.close()
        rows.append(
            (
                f"AG briefs + shared furniture, {where}",
                f"300 stories ({signed} signed)",
                f"{300 - len(stories)} false joins",
                "",
            )
        )
    return rows


class TimedRepo(StoryRepo):
    def __init__(self, index: StoryIndex) -> None:
        super().__init__(index)
        self.times: dict[str, list[float]] = defaultdict(list)

    def assign(
        self, conn: Connection, fp: Fingerprint, *, title: str, url: str, now: float, **kw: Any
    ) -> tuple[int, str, bool]:
        t = time.perf_counter()
        try:
            return super().assign(conn, fp, title=title, url=url, now=now, **kw)
        finally:
            self.times["assign"].append(time.perf_counter() - t)

    def batch(
        self, conn: Connection, fingerprints: Sequence[Fingerprint], now: float
    ) -> StoryBatch:
        return TimedBatch(self, conn, fingerprints, now)


class TimedBatch(StoryBatch):
    """The commit's story writes, timed: `remember` per article, plus the `flush` of its keys
    (one article per commit here, so the flush belongs to that article's remember)."""

    repo: TimedRepo

    def remember(self, fp: Fingerprint, *, story_id: int, article_id: int) -> None:
        t = time.perf_counter()
        super().remember(fp, story_id=story_id, article_id=article_id)
        self.repo.times["remember"].append(time.perf_counter() - t)

    def flush(self) -> None:
        t = time.perf_counter()
        super().flush()
        if self.repo.times["remember"]:
            self.repo.times["remember"][-1] += time.perf_counter() - t


def populate(st: Store, feed_id: int, n: int, idx: StoryIndex) -> None:
    rng = np.random.default_rng(1)
    chunk = 10_000
    with write_tx(st.engine) as conn:
        for start in range(0, n, chunk):
            ids = range(start + 1, min(start + chunk, n) + 1)
            t = NOW - 3600
            conn.execute(
                insert(s.stories),
                [
                    {
                        "id": i,
                        "title": f"story {i}",
                        "url": f"https://s.example/{i}",
                        "created_at": t,
                        "updated_at": t,
                    }
                    for i in ids
                ],
            )
            sigs = rng.integers(0, 2**32 - 1, size=(len(ids), idx.num_perm), dtype=np.uint64)
            conn.execute(
                insert(s.articles),
                [
                    {
                        "id": i,
                        "feed_id": feed_id,
                        "guid": f"g{i}",
                        "url": f"https://s.example/{i}",
                        "title": f"story {i}",
                        "fetched_at": t,
                        "story_id": i,
                        "story_reason": "new",
                        "minhash": np.append(sig, np.uint64(400)).tobytes(),
                    }
                    for i, sig in zip(ids, sigs, strict=True)
                ],
            )
            conn.execute(
                insert(s.story_keys),
                [
                    {"key": f"{kind}:{i:040x}", "story_id": i, "seen_at": t}
                    for i in ids
                    for kind in ("u", "t")
                ],
            )
            conn.execute(
                insert(s.story_bands),
                [
                    {"band": int(b), "article_id": i, "story_id": i, "seen_at": t}
                    for i, sig in zip(ids, sigs, strict=True)
                    for b in idx._bands(sig)
                ],
            )


def cost(directory: str, n_stories: int) -> list[tuple[str, str, str, str]]:
    st, feed_id = _store(directory, "cost")
    idx = StoryIndex(window=72 * 3600)
    repo = TimedRepo(idx)
    t = time.perf_counter()
    populate(st, feed_id, n_stories, idx)
    fill = time.perf_counter() - t
    fp_times, commit_times = [], []
    for i, (url, body) in enumerate((aeb_bodies() * 2)[:300]):
        article = Article(
            feed="bench", guid=f"new{i}", url=f"{url}?n={i}", title=f"t{i}", body=body
        )
        t = time.perf_counter()
        fp = idx.fingerprint(article)
        fp_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        st.articles.commit([(article, fp, [], None)], feed_id=feed_id, stories=repo, now=NOW)
        commit_times.append(time.perf_counter() - t)
    st.close()

    def ms(xs: list[float]) -> str:
        return f"{statistics.median(xs) * 1e3:.2f} ms (p95 {np.percentile(xs, 95) * 1e3:.2f})"

    story = [
        a + b + c
        for a, b, c in zip(fp_times, repo.times["assign"], repo.times["remember"], strict=True)
    ]
    return [
        (
            "store",
            f"{n_stories:,} stories in window",
            f"{n_stories * 42:,} band rows",
            f"filled in {fill:.0f} s",
        ),
        ("cost per article", "fingerprint", ms(fp_times), ""),
        ("cost per article", "assign (keys + LSH + verify)", ms(repo.times["assign"]), ""),
        ("cost per article", "remember (keys + 42 bands)", ms(repo.times["remember"]), ""),
        ("cost per article", "fingerprint + assign + remember", ms(story), "target < 3 ms"),
        ("for reference", "whole ArticleRepo.commit (fsync)", ms(commit_times), ""),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stories", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        rows = quality(d) + furniture(d) + cost(d, args.stories)
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print(
        f"\n{platform.machine()} {platform.processor() or ''} Python {platform.python_version()}"
        f", SQLite file, {platform.system()}"
    )


if __name__ == "__main__":
    main()
