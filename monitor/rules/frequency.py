"""How common a token is in news, for choosing the prefilter key of each rule.

The prefilter indexes each rule under one clause of tokens that every matching article must
contain; the rarer that clause, the fewer articles reach the rule. Word length is a poor guess
at rarity ("government" is long and everywhere, "Enron" short and rare), so the choice uses
document frequencies measured on real news, shipped as `token_df.json` (about 150 KB).

The table is built from the AG News training subset (`news/ag_news/train_subset.csv`, 8,815
items; the test split stays reserved for evaluating rules). Rebuild it with
`python -m monitor.rules.frequency CSV [CSV ...]`: rows of `class,title,description`, or a CSV
with a header naming a `text` column. It only ranks index keys; matching never depends on it.
A token missing from the table is treated as rarer than any in it.
"""

from __future__ import annotations

import csv
import json
import sys
from bisect import bisect_left
from functools import lru_cache
from importlib import resources
from pathlib import Path

from monitor.rules.text import tokenize

_DATA = "token_df.json"
#: Tokens seen in fewer documents than this are left out: they would all cost about the same
#: as an unknown token, and leaving them out keeps the file small.
_MIN_DF = 2


class DocFrequency:
    """Estimated share of news articles containing a token, or any token with a prefix."""

    def __init__(self, docs: int, df: dict[str, int]) -> None:
        self.docs = max(docs, 1)
        self._df = df
        self._sorted = sorted(df)
        # Half of the smallest count kept: an unknown token is rarer than any known one.
        self._unknown = _MIN_DF / 2 / self.docs

    def share(self, token: str) -> float:
        count = self._df.get(token)
        return self._unknown if count is None else count / self.docs

    def prefix_share(self, prefix: str) -> float:
        """An upper estimate for `prefix*`: the sum over the known tokens it covers, capped."""
        words = self._sorted
        i = bisect_left(words, prefix)
        total = 0
        while i < len(words) and words[i].startswith(prefix):
            total += self._df[words[i]]
            i += 1
        return min(1.0, total / self.docs) if total else self._unknown * 2


@lru_cache(maxsize=1)
def default_frequency() -> DocFrequency:
    """The shipped table (loaded once per process)."""
    raw = json.loads(resources.files("monitor.rules").joinpath(_DATA).read_text("utf-8"))
    return DocFrequency(int(raw["docs"]), {str(k): int(v) for k, v in raw["df"].items()})


def build(paths: list[Path]) -> dict[str, object]:
    """Document frequencies of the tokens of news CSVs (title + description per row)."""
    counts: dict[str, int] = {}
    docs = 0
    for path in paths:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            first = next(reader, None)
            text_col = first.index("text") if first and "text" in first else None
            rows = [first, *reader] if first is not None and text_col is None else list(reader)
            for row in rows:
                toks = tokenize(row[text_col] if text_col is not None else " ".join(row[1:]))
                docs += 1
                for tok in set(toks.norms) | set(toks.aliases):
                    counts[tok] = counts.get(tok, 0) + 1
    kept = {t: c for t, c in sorted(counts.items()) if c >= _MIN_DF}
    return {"source": [f"{p.parent.name}/{p.name}" for p in paths], "docs": docs, "df": kept}


def main(argv: list[str]) -> None:
    table = build([Path(a) for a in argv])
    out = Path(__file__).with_name(_DATA)
    out.write_text(json.dumps(table, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"{out}: {table['docs']} documents, {len(table['df'])} tokens")  # type: ignore[arg-type]


if __name__ == "__main__":
    main(sys.argv[1:])
