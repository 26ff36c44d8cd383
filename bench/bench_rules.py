"""Benchmark of rule matching: the compiled rule set with its prefilter against naive regexes.

Run: `python bench/bench_rules.py` (options: --sizes, --articles, --naive-articles, --seed,
--rules, --models). Prints one table, then the same articles against 10,000 realistic rules
plus `--models` (default 100) rules with trained scorers (combine `query_or_model`, so every
model scores every article: the worst case), with the time to load the models. The models are
trained (scikit-learn) on random 80% subsets of the shipped labels
(config/rules/labels/us-troops.jsonl) with different regularisation, so their vocabularies
differ as different rules' would. Articles are real article bodies (scrapinghub article-extraction
benchmark ground truth), cut to about 4 KB. Rules come from one of two generators over real
news (AG News training subset): `realistic` (each rule anchored on a name, a two-word name or
an entity, qualified by a few topic words, as monitoring rules are written) and
`common-words` (the first generator, whose terms are drawn from the whole vocabulary, so its
rules are mostly common words and match far more often than real ones). Both use phrases,
prefixes, OR groups, NEAR, NOT, field scopes and entities. The process is pinned to one core.

The naive baseline compiles each rule into one `re` alternation of its terms (whole words,
case-insensitive) and runs them in turn; it ignores AND/NEAR/NOT logic, so it is a lower bound
on what evaluating each rule separately costs.
"""

from __future__ import annotations

import argparse
import csv
import gc
import itertools
import json
import math
import os
import platform
import random
import re
import statistics
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

from monitor.rules import RuleSpec, compile_rules
from monitor.rules.text import tokenize

# The corpora folder: $MONITOR_CORPORA, else ../shared/corpora beside the checkout.
CORPORA = Path(
    os.environ.get("MONITOR_CORPORA") or Path(__file__).resolve().parents[2] / "shared" / "corpora"
)
ARTICLES = CORPORA / "articles/scrapinghub-aeb/ground-truth.json"
NEWS = CORPORA / "news/ag_news/train_subset.csv"
ARTICLE_CHARS = 4096
STOP = set(
    (  # noqa: SIM905 (a word list reads better as text)
        "the a an and or of to in on at for by with from as is are was were be been it its this "
        "that he she they we you i his her their our us said says has have had will would not no "
        "but new after over up out more than about into also one two who which what when where "
        "there quot lt gt 39 amp b"
    ).split()
)


def load_articles(limit: int) -> list[dict[str, str]]:
    data = json.loads(ARTICLES.read_text(encoding="utf-8"))
    out = []
    for item in data.values():
        body = item.get("articleBody") or ""
        if len(body) < 2000:
            continue
        cut = body[:ARTICLE_CHARS]
        cut = cut[: cut.rfind(" ")] if len(body) > ARTICLE_CHARS else cut
        title = " ".join(body.split()[:10])
        out.append({"title": title, "summary": "", "body": cut, "url": item.get("url", "")})
    return out[:limit]


def vocabulary() -> tuple[list[str], list[tuple[str, str]]]:
    words: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    with NEWS.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            toks = [t for t in tokenize(row["text"]).norms if t.isalpha()]
            words.update(t for t in toks if t not in STOP and len(t) > 2)
            pairs.update(
                (a, b)
                for a, b in itertools.pairwise(toks)
                if a not in STOP and b not in STOP and len(a) > 2 and len(b) > 2
            )
    vocab = [w for w, c in words.most_common() if c >= 2]
    bigrams = [p for p, c in pairs.most_common() if c >= 2]
    return vocab, bigrams


def generate_rules(
    n: int, vocab: list[str], bigrams: list[tuple[str, str]], rng: random.Random
) -> tuple[list[RuleSpec], dict[str, list[str]]]:
    # Frequency ranks drawn log-uniformly from 30 to the rarest: each decade of rarity is as
    # likely, as in real rules (a few common words, many names and specific terms).
    def rank(n: int) -> int:
        return min(n - 1, int(math.exp(rng.uniform(math.log(30), math.log(n)))))

    def word() -> str:
        return vocab[rank(len(vocab))]

    def phrase() -> str:
        a, b = bigrams[rank(len(bigrams))]
        return f'"{a} {b}"'

    def term() -> str:
        r = rng.random()
        if r < 0.3:
            return phrase()
        if r < 0.5:
            w = word()
            return f"{w[: max(3, len(w) - 2)]}*"
        return word()

    entities = {f"ent{i}": [phrase().strip('"') for _ in range(12)] for i in range(50)}
    specs = []
    for i in range(n):
        shape = i % 5
        if shape == 0:
            q = f"{phrase()} NEAR/5 ({term()} OR {term()} OR {term()})"
        elif shape == 1:
            q = f"{term()} AND ({term()} OR {term()}) NOT {word()}"
        elif shape == 2:
            q = f"title:{word()} OR {phrase()}"
        elif shape == 3:
            q = f"entity:ent{rng.randrange(50)} NEAR/8 ({term()} OR {term()})"
        else:
            q = f"({term()} OR {term()}) ONEAR/3 {term()} {term()}"
        specs.append(RuleSpec(f"rule-{i}", q))
    return specs, entities


# Words that are capitalised in news but name nothing a rule would watch for.
_NOT_NAMES = set(
    (  # noqa: SIM905 (a word list reads better as text)
        "reuters afp quote lookup inc corp ltd monday tuesday wednesday thursday friday saturday "
        "sunday january february march april may june july august september october november "
        "december jan feb mar apr jun jul aug sep sept oct nov dec update"
    ).split()
)
# Function words and vague ones, which people do not use as the topic of a monitoring rule.
_VAGUE = set(
    (  # noqa: SIM905 (a word list reads better as text)
        "some most many much more less until your make made take took seven eight nine ten six "
        "three four five number thousands period could should would might must shall like just "
        "only even still very then than them they their there these those such each every other "
        "another into onto upon while since before after during because through against between "
        "among without within about above below under over first last next year years week weeks "
        "month months time times today yesterday tomorrow said says told know known want wants "
        "going come came give gave back well also being been have having does doing done were "
        "what when where which while whose will with from this that here"
    ).split()
)
_RAW_WORD = re.compile(r"[A-Za-z][a-z]+|[.!?;:]")


def names_and_topics() -> tuple[list[str], list[tuple[str, str]], list[str]]:
    """Names (words capitalised mid-sentence at least 90% of the time), two-word names, and
    topic words (lower-case words, most common first) of AG News, the training subset."""
    upper: Counter[str] = Counter()
    lower: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    with NEWS.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            prev, start = "", True
            for raw in _RAW_WORD.findall(row["text"]):
                if not raw[0].isalpha():
                    prev, start = "", True
                    continue
                word = raw.lower()
                if not start:  # a sentence's first word is capitalised whatever it is
                    (upper if raw[0].isupper() else lower)[word] += 1
                    if prev and raw[0].isupper():
                        pairs[prev, word] += 1
                prev = word if raw[0].isupper() and not start else ""
                start = False
    names = [
        w
        for w, c in upper.most_common()
        if c >= 2 and c >= 9 * lower[w] and len(w) > 2 and w not in _NOT_NAMES
    ]
    known = set(names)
    full = [(a, b) for (a, b), c in pairs.most_common() if c >= 2 and {a, b} <= known and a != b]
    topics = [
        w
        for w, c in lower.most_common()
        if c >= 2 and w not in STOP and w not in _VAGUE and len(w) > 3
    ]
    return names, full, topics


def generate_realistic_rules(
    n: int,
    names: list[str],
    full: list[tuple[str, str]],
    topics: list[str],
    rng: random.Random,
) -> tuple[list[RuleSpec], dict[str, list[str]]]:
    """Rules as people write them to monitor news: each anchored on a name, a two-word name or
    an entity (log-uniform over their frequency ranks, so famous names are watched as well as
    obscure ones), qualified by a few topic words (drawn from the 30th to the 3,000th most
    common lower-case words), e.g. `"Microsoft Corp" NEAR/5 (lawsuit OR settle*)`."""

    def pick(items: list[Any], lo: int) -> Any:
        return items[
            min(len(items) - 1, int(math.exp(rng.uniform(math.log(lo), math.log(len(items))))))
        ]

    def name() -> str:
        return str(pick(names, 10))

    def full_name() -> str:
        a, b = pick(full, 10)
        return f'"{a} {b}"'

    def topic() -> str:
        w = str(pick(topics[:3000], 30))
        return f"{w[: max(4, len(w) - 2)]}*" if rng.random() < 0.3 else w

    entities = {
        f"ent{i}": list(dict.fromkeys(full_name().strip('"') for _ in range(rng.randint(2, 8))))
        for i in range(50)
    }
    specs = []
    for i in range(n):
        shape = i % 5
        if shape == 0:
            q = f"{full_name()} NEAR/5 ({topic()} OR {topic()} OR {topic()})"
        elif shape == 1:
            q = f"{name()} AND ({topic()} OR {topic()}) NOT {topic()}"
        elif shape == 2:
            q = f"title:{name()} OR {full_name()}"
        elif shape == 3:
            q = f"entity:ent{rng.randrange(50)} NEAR/8 ({topic()} OR {topic()})"
        else:
            q = f"({name()} OR {full_name()}) NEAR/3 {topic()}"
        specs.append(RuleSpec(f"rule-{i}", q))
    return specs, entities


_LEAF = re.compile(r'"([^"]+)"|(?<![:\w])([\w]+\*?)')


def naive_patterns(specs: list[RuleSpec], entities: dict[str, list[str]]) -> list[re.Pattern[str]]:
    patterns = []
    for spec in specs:
        alts: list[str] = []
        for m in _LEAF.finditer(spec.query):
            text = m.group(1) or m.group(2)
            if text in ("AND", "OR", "NOT", "title") or text.startswith("NEAR"):
                continue
            if text.startswith("ent") and text[3:].isdigit():
                alts.extend(re.escape(a) for a in entities[text])
                continue
            if text.startswith("ONEAR") or text.isdigit():
                continue
            esc = re.escape(text.rstrip("*")).replace(r"\ ", r"\s+")
            alts.append(esc + (r"\w*" if text.endswith("*") else ""))
        patterns.append(re.compile(r"\b(?:" + "|".join(alts) + r")\b", re.IGNORECASE))
    return patterns


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--articles", type=int, default=150)
    parser.add_argument("--naive-articles", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--rules",
        choices=("realistic", "common-words", "both"),
        default="both",
        help="realistic: anchored on names and entities; common-words: the first generator, "
        "whose rules are mostly common words and match far more often than real ones",
    )
    parser.add_argument("--models", type=int, default=100, help="rules with models (0: none)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    articles = load_articles(args.articles)
    vocab, bigrams = vocabulary()
    names, full, topics = names_and_topics()
    mean_kb = statistics.mean(len(a["body"]) for a in articles) / 1024
    cpu = platform.processor() or platform.machine()
    print(
        f"# {len(articles)} articles, mean body {mean_kb:.1f} KB; "
        f"python {platform.python_version()} on {cpu}, 1 core"
    )
    header = (
        f"{'generator':>12} | {'rules':>6} | {'compile s':>9} | {'mem MB':>6} | "
        f"{'articles/s':>10} | {'median ms':>9} | {'p99 ms':>7} | {'cpu median ms':>13} | "
        f"{'naive median ms':>15} | "
        f"{'speedup':>7} | {'matches/article':>15}"
    )
    print(header)
    print("-" * len(header))
    kinds = ("realistic", "common-words") if args.rules == "both" else (args.rules,)
    runs = [(kind, int(s)) for kind in kinds for s in args.sizes.split(",")]
    for kind, size in runs:
        rng = random.Random(args.seed)
        if kind == "realistic":
            specs, entities = generate_realistic_rules(size, names, full, topics, rng)
        else:
            specs, entities = generate_rules(size, vocab, bigrams, rng)
        # Memory is what the compiled rule set holds, traced by tracemalloc in a second compile
        # (RSS growth misses memory the allocator reuses from the previous rule set).
        gc.collect()
        tracemalloc.start()
        kept = compile_rules(specs, entities)
        gc.collect()
        mem = tracemalloc.get_traced_memory()[0] / 2**20
        tracemalloc.stop()
        del kept
        gc.collect()
        t0 = time.perf_counter()
        ruleset = compile_rules(specs, entities)
        compile_s = time.perf_counter() - t0

        for a in articles[:5]:  # warm caches and lazy imports
            ruleset.match(a)
        times, cpu_times, matches = [], [], 0
        for a in articles:
            c = time.thread_time()
            t = time.perf_counter()
            matches += len(ruleset.match(a))
            times.append((time.perf_counter() - t) * 1000)
            cpu_times.append((time.thread_time() - c) * 1000)

        patterns = naive_patterns(specs, entities)
        naive = []
        for a in articles[: args.naive_articles]:
            text = "\n".join((a["title"], a["body"]))
            t = time.perf_counter()
            for p in patterns:
                p.search(text)
            naive.append((time.perf_counter() - t) * 1000)

        med = statistics.median(times)
        naive_med = statistics.median(naive)
        rate = 1000 / statistics.mean(times)
        print(
            f"{kind:>12} | {size:>6} | {compile_s:>9.2f} | {mem:>6.1f} | {rate:>10.0f}"
            f" | {med:>9.3f} | {percentile(times, 0.99):>7.3f} | "
            f"{statistics.median(cpu_times):>13.3f} | {naive_med:>15.2f} | "
            f"{naive_med / med:>6.0f}x | {matches / len(articles):>15.1f}"
        )
        del ruleset, patterns  # freed before the next size is measured
    if args.models:
        bench_models(args, articles, names, full, topics)


LABELS = Path(__file__).resolve().parents[1] / "config/rules/labels/us-troops.jsonl"


def bench_models(
    args: argparse.Namespace,
    articles: list[dict[str, str]],
    names: list[str],
    full: list[tuple[str, str]],
    topics: list[str],
) -> None:
    """10,000 realistic Boolean rules plus `args.models` rules with trained scorers."""
    import tempfile

    from monitor.rules.compile import ScorerSpec
    from monitor.rules.labels import read_labels
    from monitor.rules.scorer import Bank, load_model
    from monitor.rules.train import Params, fit

    docs = read_labels(LABELS)
    rng = random.Random(args.seed)
    specs, entities = generate_realistic_rules(10_000, names, full, topics, rng)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        scored: list[RuleSpec] = []
        for k in range(args.models):
            subset = [d for d in docs if rng.random() < 0.8]
            name = f"model-{k}"
            model = fit(name, subset, Params(c=rng.choice([0.5, 1, 2, 4, 8, 16])))
            model.meta["training"] = {"sha256": ""}
            path = Path(tmp) / f"{name}.json"
            path.write_text(json.dumps(model.to_json(), separators=(",", ":")))
            scorer = ScorerSpec(path, threshold=0.6, combine="query_or_model")
            scored.append(RuleSpec(name, specs[k].query, scorer))
        train_s = time.perf_counter() - t0
        size_kb = statistics.mean(p.stat().st_size for p in Path(tmp).iterdir()) / 1024
        # What models add to a start or a reload: reading and checking each file, and
        # merging them into one bank (the rest of compile_rules is the Boolean rules').
        t0 = time.perf_counter()
        models = [load_model(spec.scorer.model, spec.name) for spec in scored if spec.scorer]
        Bank(models)
        load_s = time.perf_counter() - t0
        del models
        t0 = time.perf_counter()
        ruleset = compile_rules([*specs, *scored], entities)
        both_s = time.perf_counter() - t0
    for a in articles[:5]:
        ruleset.match(a)
    times, cpu_times, matches = [], [], 0
    for a in articles:
        c = time.thread_time()
        t = time.perf_counter()
        matches += len(ruleset.match(a))
        times.append((time.perf_counter() - t) * 1000)
        cpu_times.append((time.thread_time() - c) * 1000)
    print()
    print(
        f"# 10,000 realistic rules + {args.models} rules with models (query_or_model; "
        f"models {size_kb:.0f} KB each, trained in {train_s:.0f} s)"
    )
    print(
        f"model loading ({args.models} files read, checked and merged): {load_s:.2f} s; "
        f"compile of all {10_000 + args.models} rules with their models {both_s:.2f} s"
    )
    print(
        f"median {statistics.median(times):.3f} ms, p99 {percentile(times, 0.99):.3f} ms, "
        f"cpu median {statistics.median(cpu_times):.3f} ms per article; "
        f"{matches / len(articles):.1f} matches/article"
    )


if __name__ == "__main__":
    main()
