"""What a match reports: the hits (field + character span + query leaf) and the best snippet.

Owns `Hit`, `Match` and `Snippet`, and how the snippet window is chosen: the window of
`width` characters holding the most hits, preferring the body on ties, widened to word
boundaries, with every hit in it highlighted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.rules.scorer import Scored

_FIELD_PREFERENCE = {"body": 3, "summary": 2, "title": 1}
_WHITESPACE = str.maketrans({c: " " for c in "\n\r\t\v\f\u2028\u2029\x85"})
_ELLIPSIS = "…"


@dataclass(frozen=True, slots=True, order=True)
class Hit:
    """One leaf of the query found in one field, at `[start, end)` of the original text."""

    field: str
    start: int
    end: int
    leaf: str


@dataclass(frozen=True, slots=True)
class Snippet:
    """A window of one field's text with the hits in it, as spans within `text`."""

    field: str
    text: str
    highlights: list[tuple[int, int]] = dataclasses.field(default_factory=list)

    def marked(self, open: str = "**", close: str = "**") -> str:
        """`text` with each highlight wrapped in `open` ... `close`."""
        out: list[str] = []
        pos = 0
        for start, end in self.highlights:
            out.append(self.text[pos:start])
            out.append(open + self.text[start:end] + close)
            pos = end
        out.append(self.text[pos:])
        return "".join(out)


@dataclass(frozen=True, slots=True)
class Match:
    """A rule that matched an article, with every leaf occurrence that made it match."""

    rule: str
    hits: list[Hit]
    #: For a rule with a trained model: its score, the threshold and the terms that weighed most.
    scored: Scored | None = None

    def snippet(self, fields: Mapping[str, str], width: int = 280) -> Snippet:
        """The best window of `width` characters: most hits, then body over other fields."""
        return best_snippet(self.hits, fields, width)


def best_snippet(hits: list[Hit], fields: Mapping[str, str], width: int = 280) -> Snippet:
    """See `Match.snippet`. Without hits, the start of the body (or title)."""
    width = max(width, 20)
    best: tuple[tuple[int, int, int], str, int, int] | None = None
    by_field: dict[str, list[Hit]] = {}
    for hit in hits:
        if hit.end <= len(fields.get(hit.field, "")):
            by_field.setdefault(hit.field, []).append(hit)
    for name, field_hits in by_field.items():
        field_hits.sort()
        for i, first in enumerate(field_hits):
            count, last_end = 0, first.end
            for other in field_hits[i:]:
                if other.end - first.start > width:
                    break
                count += 1
                last_end = max(last_end, other.end)
            key = (count, _FIELD_PREFERENCE.get(name, 0), -first.start)
            if best is None or key > best[0]:
                best = (key, name, first.start, last_end)
    if best is None:
        name = "body" if fields.get("body") else "title"
        return _window(fields.get(name, ""), name, 0, 0, width, [])
    _, name, start, end = best
    return _window(fields[name], name, start, end, width, by_field[name])


def _window(text: str, name: str, start: int, end: int, width: int, hits: list[Hit]) -> Snippet:
    slack = max(width - (end - start), 0)
    lo = max(0, start - slack // 2)
    hi = min(len(text), lo + max(width, end - lo))
    lo = max(0, min(lo, hi - width))
    # Widen to whole words so a snippet never starts or ends mid-word.
    if lo > 0:
        space = text.rfind(" ", max(0, lo - 20), lo)
        lo = space + 1 if space != -1 else lo
    if hi < len(text):
        space = text.find(" ", hi, hi + 20)
        hi = space if space != -1 else hi
    # Leading and trailing blanks (a body that starts with a newline) are not shown.
    while lo < hi and text[lo].isspace():
        lo += 1
    while hi > lo and text[hi - 1].isspace():
        hi -= 1
    lead = _ELLIPSIS if text[:lo].strip() else ""
    tail = _ELLIPSIS if text[hi:].strip() else ""
    body = text[lo:hi].translate(_WHITESPACE)
    return Snippet(name, lead + body + tail, _spans(hits, lo, hi, len(lead) - lo))


def _spans(hits: list[Hit], lo: int, hi: int, shift: int) -> list[tuple[int, int]]:
    """The hits inside text[lo:hi], moved by `shift` into the snippet, overlaps merged."""
    spans: list[tuple[int, int]] = []
    for hit in sorted(hits):
        if hit.start >= lo and hit.end <= hi:
            s, e = hit.start + shift, hit.end + shift
            if spans and s <= spans[-1][1]:
                spans[-1] = (spans[-1][0], max(spans[-1][1], e))
            else:
                spans.append((s, e))
    return spans
