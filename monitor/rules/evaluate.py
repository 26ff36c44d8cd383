"""Evaluation of one compiled rule against one article.

Owns the compiled node types (what each query form means on a tokenised article) and `Doc`,
the per-article cache of tokenised fields. A node evaluates to `None` (false) or to a list of
spans `(field, first_pos, last_pos, hits)`: positions are what NEAR measures, and hits are what
explanations show. A hit is `(field, a, b, leaf, in_chars)`: a token position range, turned
into a character span only when reported (`hit_span`), or already a character span (regexes).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from monitor.rules.budget import ArticleBudget
from monitor.rules.query import Word
from monitor.rules.text import Tokens, tokenize

log = logging.getLogger(__name__)

#: Seconds one regex may run on one field before it is abandoned as "no match".
REGEX_TIMEOUT = 0.05

# Marks a leaf not yet looked up in `Doc.leaf_cache` (None there means "looked up: false").
_UNSET: Any = object()

HitT = tuple[str, int, int, str, bool]
Span = tuple[str, int, int, tuple[HitT, ...]]


class Doc:
    """One article's fields, tokenised lazily and at most once."""

    __slots__ = ("_alias_starts", "_terms", "_tokens", "budget", "fields", "leaf_cache")

    def __init__(self, fields: Mapping[str, str], budget: ArticleBudget | None = None) -> None:
        self.fields = fields
        # The regex time this article may still cost (unlimited unless the caller sets one).
        self.budget = budget if budget is not None else ArticleBudget()
        self._tokens: dict[str, Tokens] = {}
        # Rules share many leaves and entities (interned at compile time); each is looked up
        # once.
        self.leaf_cache: dict[EvalNode, list[Span] | None] = {}
        self._alias_starts: dict[str, dict[int, list[tuple[str, int]]]] = {}
        self._terms: dict[int, Counter[str]] = {}

    def terms(self, ngrams: int) -> Counter[str]:
        """Term counts of title, summary and body for trained models (`scorer.terms_of`)."""
        counts = self._terms.get(ngrams)
        if counts is None:
            from monitor.rules.scorer import FIELDS, terms_of

            counts = terms_of([self.tokens(f).norms for f in FIELDS], ngrams)
            self._terms[ngrams] = counts
        return counts

    def tokens(self, name: str) -> Tokens:
        toks = self._tokens.get(name)
        if toks is None:
            toks = self._tokens[name] = tokenize(self.fields.get(name) or "")
        return toks

    def alias_starts(self, name: str) -> dict[int, list[tuple[str, int]]]:
        """First position -> (joined alias, last position), for phrases through `e-mail`."""
        table = self._alias_starts.get(name)
        if table is None:
            table = {}
            for norm, spans in self.tokens(name).aliases.items():
                for first, last in spans:
                    table.setdefault(first, []).append((norm, last))
            self._alias_starts[name] = table
        return table


def hit_span(doc: Doc, hit: HitT) -> tuple[str, int, int, str]:
    """A hit as (field, start, end, leaf) in characters of the original field text."""
    name, a, b, leaf, in_chars = hit
    if in_chars:
        return name, a, b, leaf
    toks = doc.tokens(name)
    return name, toks.starts[a], toks.ends[b], leaf


class EvalNode(ABC):
    """A compiled query node. `label` is how explanations name it."""

    label: str = ""

    @abstractmethod
    def ev(self, doc: Doc) -> list[Span] | None:
        """The node's spans in `doc` (possibly none, for NOT), or None when it is false."""

    @property
    def children(self) -> tuple[EvalNode, ...]:
        return ()


@dataclass(eq=False, slots=True)
class PhraseLeaf(EvalNode):
    """A word or phrase (words may be prefixes), in the fields of its scope."""

    words: tuple[Word, ...]
    alternatives: tuple[tuple[Word, ...], ...]
    fields: tuple[str, ...]
    label: str
    # Per form (the words, then each alternative): the words themselves and the exact (not
    # prefix) ones as a set. A form can only occur in a field holding all of those, and one
    # set comparison rules most forms out before any positions are looked at.
    _forms: tuple[tuple[tuple[Word, ...], frozenset[str]], ...] = field(init=False, repr=False)
    # The word of a leaf that is one exact word (most leaves), which needs no phrase logic.
    _single: str | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._forms = tuple(
            (words, frozenset(w.norm for w in words if not w.prefix))
            for words in (self.words, *self.alternatives)
        )
        one = len(self.words) == 1 and not self.alternatives and not self.words[0].prefix
        self._single = self.words[0].norm if one else None

    def ev(self, doc: Doc) -> list[Span] | None:
        cache = doc.leaf_cache
        cached = cache.get(self, _UNSET)
        if cached is not _UNSET:
            return cached  # type: ignore[no-any-return]
        out: list[Span] = []
        single, label = self._single, self.label
        if single is not None:
            for name in self.fields:
                toks = doc.tokens(name)
                if single in toks.words:
                    out.extend(
                        (name, a, b, ((name, a, b, label, False),))
                        for a, b in toks.occurrences(single)
                    )
            result = cache[self] = out or None
            return result
        for name in self.fields:
            toks = doc.tokens(name)
            if not toks.norms:
                continue
            present = toks.words
            for words, needed in self._forms:
                if not needed <= present:
                    continue
                for first, last in _phrase_spans(doc, name, toks, words):
                    hit = (name, first, last, self.label, False)
                    out.append((name, first, last, (hit,)))
        result = cache[self] = out or None
        return result


def _word_spans(toks: Tokens, word: Word) -> list[tuple[int, int]]:
    if not word.prefix:
        if word.norm not in toks.index and word.norm not in toks.aliases:
            return []
        return toks.occurrences(word.norm)
    spans: list[tuple[int, int]] = []
    for norm in toks.with_prefix(word.norm):
        spans.extend(toks.occurrences(norm))
    spans.sort()
    return spans


def _word_at(word: Word, norm: str) -> bool:
    return norm.startswith(word.norm) if word.prefix else norm == word.norm


def _phrase_spans(
    doc: Doc, name: str, toks: Tokens, words: tuple[Word, ...]
) -> list[tuple[int, int]]:
    spans = _word_spans(toks, words[0])
    if len(words) == 1 or not spans:
        return spans
    norms = toks.norms
    aliases = doc.alias_starts(name) if toks.aliases else {}
    out: list[tuple[int, int]] = []
    for first, last in spans:
        ends = [last]
        for word in words[1:]:
            nxt: list[int] = []
            for end in ends:
                pos = end + 1
                if pos < len(norms) and _word_at(word, norms[pos]):
                    nxt.append(pos)
                for alias, alias_last in aliases.get(pos, ()):
                    if _word_at(word, alias):
                        nxt.append(alias_last)
            ends = nxt
            if not ends:
                break
        out.extend((first, end) for end in ends)
    return out


@dataclass(eq=False, slots=True)
class EntityLeaf(EvalNode):
    """Any alias of a named gazetteer; hits are labelled with the entity, not the alias."""

    aliases: tuple[PhraseLeaf, ...]
    label: str

    def ev(self, doc: Doc) -> list[Span] | None:
        cache = doc.leaf_cache
        cached = cache.get(self, _UNSET)
        if cached is not _UNSET:
            return cached  # type: ignore[no-any-return]
        out: list[Span] = []
        for alias in self.aliases:
            spans = alias.ev(doc)
            if spans:
                out.extend(spans)
        result = cache[self] = out or None
        return result


@dataclass(eq=False, slots=True)
class RegexLeaf(EvalNode):
    """A regex on the raw field text, abandoned after `REGEX_TIMEOUT` seconds per field or
    when the article's regex budget runs out (`monitor.rules.budget`)."""

    pattern: Any  # a compiled `regex` pattern (the package has no type stubs)
    fields: tuple[str, ...]
    label: str

    def ev(self, doc: Doc) -> list[Span] | None:
        out: list[Span] = []
        for name in self.fields:
            text = doc.fields.get(name) or ""
            if not text:
                continue
            found = doc.budget.finditer(self, self.pattern, text, name, REGEX_TIMEOUT)
            if found is None:  # out of time: not matched (the reason is in doc.budget)
                continue
            toks = doc.tokens(name)
            for start, end in found:
                if end == start:
                    continue
                first = toks.position_of_char(start)
                last = max(first, toks.position_of_char(end - 1))
                out.append((name, first, last, ((name, start, end, self.label, True),)))
        return out or None


@dataclass(eq=False, slots=True)
class AndNode(EvalNode):
    parts: tuple[EvalNode, ...]
    label: str = "AND"

    def ev(self, doc: Doc) -> list[Span] | None:
        out: list[Span] = []
        for part in self.parts:
            spans = part.ev(doc)
            if spans is None:
                return None
            out.extend(spans)
        return out

    @property
    def children(self) -> tuple[EvalNode, ...]:
        return self.parts


@dataclass(eq=False, slots=True)
class OrNode(EvalNode):
    parts: tuple[EvalNode, ...]
    label: str = "OR"

    def ev(self, doc: Doc) -> list[Span] | None:
        out: list[Span] | None = None
        for part in self.parts:
            spans = part.ev(doc)
            if spans is not None:
                out = spans if out is None else out + spans
        return out

    @property
    def children(self) -> tuple[EvalNode, ...]:
        return self.parts


@dataclass(eq=False, slots=True)
class NotNode(EvalNode):
    child: EvalNode
    label: str = "NOT"

    def ev(self, doc: Doc) -> list[Span] | None:
        return None if self.child.ev(doc) is not None else []

    @property
    def children(self) -> tuple[EvalNode, ...]:
        return (self.child,)


@dataclass(eq=False, slots=True)
class NearNode(EvalNode):
    """Both sides within `distance` tokens (tokens strictly between their spans), same field."""

    left: EvalNode
    right: EvalNode
    distance: int
    ordered: bool
    label: str

    def ev(self, doc: Doc) -> list[Span] | None:
        left = self.left.ev(doc)
        if not left:
            return None
        right = self.right.ev(doc)
        if not right:
            return None
        return near_pairs(left, right, self.distance, self.ordered) or None

    @property
    def children(self) -> tuple[EvalNode, ...]:
        return (self.left, self.right)


def gap(a: Span, b: Span, ordered: bool) -> int | None:
    """Tokens strictly between two spans of one field; None if they overlap or are misordered."""
    if a[2] < b[1]:
        return b[1] - a[2] - 1
    if not ordered and b[2] < a[1]:
        return a[1] - b[2] - 1
    return None


def near_pairs(left: list[Span], right: list[Span], distance: int, ordered: bool) -> list[Span]:
    """The joined spans of every (left, right) pair of one field within `distance` tokens."""
    by_field: dict[str, list[Span]] = {}
    for span in right:
        by_field.setdefault(span[0], []).append(span)
    starts: dict[str, list[int]] = {}
    widest: dict[str, int] = {}
    for name, spans in by_field.items():
        spans.sort(key=lambda s: s[1])
        starts[name] = [s[1] for s in spans]
        widest[name] = max(s[2] - s[1] for s in spans)
    out: list[Span] = []
    for a in left:
        others = by_field.get(a[0])
        if others is None:
            continue
        # Only right spans starting within reach of `a` can be close enough.
        lo = bisect_left(starts[a[0]], a[1] - distance - widest[a[0]] - 1)
        hi = bisect_right(starts[a[0]], a[2] + distance + 1)
        for b in others[lo:hi]:
            g = gap(a, b, ordered)
            if g is not None and g <= distance:
                out.append((a[0], min(a[1], b[1]), max(a[2], b[2]), a[3] + b[3]))
    return out
