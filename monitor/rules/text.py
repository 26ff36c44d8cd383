"""The one normaliser and tokeniser shared by rule queries and article text.

Owns what a "token" is, so that a word in a rule and the same word in an article always
compare equal: Unicode NFKC + casefold, accents of Latin letters folded (`café` = `cafe`,
`Irák` = `irak`; on by default, `set_fold_accents`), `U.S.` / `U.S` / `US` alike, curly quotes and
apostrophes, possessive `'s` dropped, and hyphenated words split into parts (each a token at
its own position) plus one joined alias spanning the parts, so `e-mail` is found by `e-mail`,
`"e mail"`, `mail` and `email`. Every token keeps its character span in the original text so
hits can be highlighted there.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from bisect import bisect_left
from dataclasses import dataclass, field
from itertools import accumulate, compress, count
from operator import not_

# Written with re rather than a tokenizer library: the rules need exact character spans in
# the original text and a handful of news-specific cases (initialisms, possessives, hyphen
# compounds); spaCy's tokenizer would cost 185 MB of install for the same four regexes.
_APOS = "'\u2019\u02bc\u2018"
_HYPHENS = "-\u2010\u2011"
_U_CHAR = r"(?:[^\W_]|[\u0300-\u036f])"
_U_ALPHA = r"[^\W\d_]"
_UNICODE_TOKEN = re.compile(
    rf"(?<![^\W_]){_U_ALPHA}(?:\.{_U_ALPHA})+\.?(?![^\W_])"  # U.S., U.S, e.g.
    rf"|{_U_CHAR}+(?:[{_APOS}]{_U_CHAR}+)*(?:[{_HYPHENS}]{_U_CHAR}+(?:[{_APOS}]{_U_CHAR}+)*)*"
)
_ASCII_TOKEN = re.compile(
    # One alternation scanned once: a word, or (a lone letter then ".x" repeated) an initialism.
    # The lookahead skips the alternation after most words, which end at a space or a comma:
    # it only ever matches from a `.`, `'` or `-` (a fifth of the tokenising time).
    r"[a-z0-9]+(?:(?=[.'-])(?:(?<=\b[a-z])(?:\.[a-z])+\.?(?![a-z0-9])"
    r"|(?:'[a-z0-9]+)*(?:-[a-z0-9]+(?:'[a-z0-9]+)*)*))?"
)
# The token patterns with the whole match captured, for `re.split` (see `_spans`).
_SPLITTERS = {p: re.compile(f"({p.pattern})") for p in (_ASCII_TOKEN, _UNICODE_TOKEN)}
_TYPOGRAPHY = (
    *((c, "'") for c in "\u2019\u2018\u02bc"),
    *((c, '"') for c in "\u201c\u201d\u201e\u00ab\u00bb"),
    *((c, "-") for c in "\u2010\u2011"),
    *((c, " ") for c in "\u2013\u2014\u2022\u00a0\u2009\u200a\u202f\u2026\u00b7"),
)
_APOS_SPLIT = re.compile(f"[{_APOS}]")
_WORD_PART = re.compile(rf"{_U_CHAR}+(?:[{_APOS}]{_U_CHAR}+)*")


#: Whether `fold` strips the accents of Latin letters. Process-wide, so that a query and the
#: text it is matched against are always folded alike; `compile_rules` sets it from the
#: config (`fold_accents`), and a rule set remembers the setting it was compiled with.
_FOLD_ACCENTS = True
# Latin letters with a stroke or ligatures, which Unicode does not decompose.
_LATIN_EXTRA = str.maketrans(
    {"ø": "o", "đ": "d", "ł": "l", "ħ": "h", "ŧ": "t", "ƀ": "b", "æ": "ae", "œ": "oe", "ı": "i"}
)


def set_fold_accents(on: bool) -> None:
    """Fold accents of Latin letters (`café` -> `cafe`) in `fold` and `tokenize`, or not."""
    global _FOLD_ACCENTS
    _FOLD_ACCENTS = on
    _strip_latin_accents.cache_clear()


def fold_accents_enabled() -> bool:
    return _FOLD_ACCENTS


def fold(text: str) -> str:
    """NFKC + casefold (+ Latin accents stripped, by default): the comparison form of text."""
    if text.isascii():
        return text.lower()
    folded = unicodedata.normalize("NFKC", text).casefold()
    if _FOLD_ACCENTS and not folded.isascii():
        return _strip_latin_accents(folded)
    return folded


@functools.lru_cache(maxsize=65536)
def _strip_latin_accents(text: str) -> str:
    """Combining marks dropped after Latin letters only: `irák` -> `irak`, but Greek, Cyrillic
    (`й` is not `и`) and other scripts keep theirs."""
    decomposed = unicodedata.normalize("NFD", text)
    out: list[str] = []
    latin = False
    for char in decomposed:
        if unicodedata.combining(char):
            if not latin:
                out.append(char)
            continue
        latin = char.isascii() or "LATIN" in unicodedata.name(char, "")
        out.append(char)
    return unicodedata.normalize("NFC", "".join(out)).translate(_LATIN_EXTRA)


def _norm_word(word: str) -> str:
    """One word (no hyphens) in comparison form: folded, possessive and apostrophes dropped."""
    w = fold(word)
    if "'" in w or "\u2019" in w or "\u02bc" in w or "\u2018" in w:
        w = _APOS_SPLIT.sub("'", w)
        if w.endswith("'s"):
            w = w[:-2]
        w = w.replace("'", "")
    return w


def _norm_initialism(word: str) -> str:
    return fold(word).replace(".", "")


@dataclass(slots=True)
class Tokens:
    """The tokens of one text: normalised forms by position, plus joined hyphen aliases.

    `aliases` maps a joined compound (`email` for `e-mail`) to its (first, last) positions.
    Character spans (`starts`, `ends`) are computed on first use: most articles are only
    looked up by token, and their spans are needed only to report hits.
    """

    text: str
    norms: list[str] = field(default_factory=list)
    aliases: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    _starts: list[int] | None = None
    _ends: list[int] | None = None
    # The text split into gap, token, gap, ..., gap (`_split`), kept until spans are needed.
    _parts: list[str] | None = None
    _index: dict[str, list[int]] | None = None
    _vocab: list[str] | None = None
    _words: frozenset[str] | None = None

    def __len__(self) -> int:
        return len(self.norms)

    @property
    def starts(self) -> list[int]:
        if self._starts is None:
            parts = self._parts if self._parts is not None else _split(self.text)[0]
            self._starts, self._ends = _spans(parts)
            self._parts = None
        return self._starts

    @property
    def ends(self) -> list[int]:
        if self._ends is None:
            parts = self._parts if self._parts is not None else _split(self.text)[0]
            self._starts, self._ends = _spans(parts)
            self._parts = None
        return self._ends

    @property
    def index(self) -> dict[str, list[int]]:
        """Token -> its positions, built on first use (most fields are never queried)."""
        if self._index is None:
            index: dict[str, list[int]] = {}
            for i, norm in enumerate(self.norms):
                positions = index.get(norm)
                if positions is None:
                    index[norm] = [i]
                else:
                    positions.append(i)
            self._index = index
        return self._index

    @property
    def vocab(self) -> list[str]:
        """Sorted distinct tokens and aliases, for prefix look-ups by bisection."""
        if self._vocab is None:
            self._vocab = sorted(self.words)
        return self._vocab

    @property
    def words(self) -> frozenset[str]:
        """Distinct tokens and aliases: what a word must be among to occur in the text."""
        if self._words is None:
            self._words = frozenset(self.norms).union(self.aliases)
        return self._words

    def with_prefix(self, prefix: str) -> list[str]:
        """Distinct tokens (and aliases) that start with `prefix`."""
        vocab = self.vocab
        i = bisect_left(vocab, prefix)
        out: list[str] = []
        while i < len(vocab) and vocab[i].startswith(prefix):
            out.append(vocab[i])
            i += 1
        return out

    def occurrences(self, norm: str) -> list[tuple[int, int]]:
        """(first, last) position spans where `norm` occurs, as a token or a joined alias."""
        spans = [(p, p) for p in self.index.get(norm, ())]
        alias = self.aliases.get(norm)
        if alias:
            spans.extend(alias)
            spans.sort()
        return spans

    def position_of_char(self, offset: int) -> int:
        """The position of the token at or after character `offset` (clamped)."""
        i = bisect_left(self.ends, offset + 1)
        return min(i, max(len(self.norms) - 1, 0))


def _pattern(text: str) -> tuple[re.Pattern[str], str]:
    # Lowercasing ASCII keeps every offset, so the ASCII pattern can scan the lowered text.
    # Most news is ASCII but for its typography; replacing that one character for one keeps
    # the offsets too and lets such text take the fast path.
    if text.isascii():
        return _ASCII_TOKEN, text.lower()
    plain = text
    for char, ascii_char in _TYPOGRAPHY:
        if char in plain:
            plain = plain.replace(char, ascii_char)
    if plain.isascii():
        return _ASCII_TOKEN, plain.lower()
    return _UNICODE_TOKEN, text


def tokenize(text: str) -> Tokens:
    """Split `text` into normalised tokens (spans in `text` available on demand)."""
    out = Tokens(text)
    if not text:
        out._starts, out._ends = [], []
        return out
    parts, pattern = _split(text)
    out._parts = parts
    raw = parts[1::2]
    if pattern is _UNICODE_TOKEN:
        raw = [t.lower() if t.isascii() else fold(t) for t in raw]
    # Whole-list operations first: only the few tokens with an apostrophe, dot or hyphen
    # (or other non-alphanumerics) need the slow path.
    special = _special(raw)
    if not special:
        out.norms = raw
        return out
    norms = out.norms
    done = 0
    for i in special:
        norms.extend(raw[done:i])
        done = i + 1
        tok = raw[i]
        pieces = _pieces(tok)
        if len(pieces) == 1:
            norms.append(_norm_initialism(tok) if "." in tok else _norm_word(tok))
            continue
        first = len(norms)
        parts = [_norm_word(tok[s:e]) for s, e in pieces]
        norms.extend(parts)
        out.aliases.setdefault("".join(parts), []).append((first, len(norms) - 1))
    norms.extend(raw[done:])
    return out


def _special(raw: list[str]) -> list[int]:
    """Positions of the tokens that are not plain letters and digits (run in C: map/compress
    instead of a Python loop over every token)."""
    return list(compress(count(), map(not_, map(str.isalnum, raw))))


def _pieces(tok: str) -> list[tuple[int, int]]:
    """Offsets within a token of the parts it splits into (one part unless hyphenated)."""
    # Substring tests for the three _HYPHENS rather than a regex search: this runs for every
    # token with an apostrophe or a dot, and `in` costs a fraction of a regex call.
    if "." in tok or ("-" not in tok and "\u2010" not in tok and "\u2011" not in tok):
        return [(0, len(tok))]
    return [(m.start(), m.end()) for m in _WORD_PART.finditer(tok)]


def _split(text: str) -> tuple[list[str], re.Pattern[str]]:
    """`text` (lowered if ASCII) split into gap, token, gap, ..., gap, and the pattern used.

    One scan gives both the tokens and, through the lengths of the pieces, their offsets:
    spans are then a running sum done in C instead of a second scan with a match object per
    token (which cost as much as the tokenising itself).
    """
    pattern, src = _pattern(text)
    return _SPLITTERS[pattern].split(src), pattern


def _spans(parts: list[str]) -> tuple[list[int], list[int]]:
    """Start and end offsets of every token of a `_split` text, in the order `tokenize` emits
    them."""
    offsets = list(accumulate(map(len, parts)))
    raw = parts[1::2]
    starts = offsets[0:-1:2]
    ends = offsets[1::2]
    # Hyphenated tokens become several parts: rebuild the lists around them (a token that
    # stays whole keeps its span).
    split = [(i, pieces) for i in _special(raw) if len(pieces := _pieces(raw[i])) > 1]
    if not split:
        return starts, ends
    out_starts: list[int] = []
    out_ends: list[int] = []
    done = 0
    for i, pieces in split:
        out_starts.extend(starts[done:i])
        out_ends.extend(ends[done:i])
        done = i + 1
        start = starts[i]
        for s, e in pieces:
            out_starts.append(start + s)
            out_ends.append(start + e)
    out_starts.extend(starts[done:])
    out_ends.extend(ends[done:])
    return out_starts, out_ends
