"""`monitor backtest`: what the current rules would have alerted on, over stored articles."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

from monitor.checks import compile_settings
from monitor.config import load_config, parse_duration
from monitor.store import Store


def cmd_backtest(args: argparse.Namespace) -> int:
    return backtest(args.config, since=args.since, rules=args.rule, fmt=args.format)


def backtest(path: str, *, since: str, rules: list[str] | None, fmt: str) -> int:
    """What the current rules would have alerted on, over the stored articles."""
    checked = compile_settings(load_config(path), run_examples=False)
    store = Store(checked.settings.database)
    cutoff = time.time() - parse_duration(since).total_seconds()
    try:
        articles = store.articles.recent(cutoff)
    finally:
        store.close()
    wanted = set(rules) if rules else None
    unknown = (wanted or set()) - set(checked.ruleset.rule_names)
    if unknown:
        print(f"unknown rule(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    per_rule: dict[str, set[int]] = defaultdict(set)
    hits_count: Counter[str] = Counter()
    out: list[dict[str, Any]] = []
    for a in reversed(articles):
        fields = {
            "title": a["title"],
            "summary": a["summary"],
            "body": a["body"],
            "author": "\n".join(json.loads(a["authors"])),
            "tags": "\n".join(json.loads(a["tags"])),
            "url": a["url"],
            "feed": a["feed_name"],
        }
        for m in checked.ruleset.match(fields):
            if wanted and m.rule not in wanted:
                continue
            hits_count[m.rule] += 1
            story = a["story_id"] or -a["id"]
            first = story not in per_rule[m.rule]
            per_rule[m.rule].add(story)
            out.append(
                {
                    "rule": m.rule,
                    "article_id": a["id"],
                    "story_id": a["story_id"],
                    "title": a["title"],
                    "url": a["url"],
                    "would_alert": first,
                    "fetched_at": datetime.fromtimestamp(a["fetched_at"], UTC).isoformat(),
                    "hits": [
                        {"field": h.field, "leaf": h.leaf, "start": h.start, "end": h.end}
                        for h in m.hits[:20]
                    ],
                }
            )
    if fmt == "json":
        for row in out:
            print(json.dumps(row))
        return 0
    print(f"{len(articles)} stored articles since {since}:")
    for rule in sorted(wanted or set(checked.ruleset.rule_names)):
        print(
            f"  {rule:<32} {len(per_rule[rule]):>5} alerts ({hits_count[rule]} matching articles)"
        )
    for row in out:
        if row["would_alert"]:
            print(
                f"  [{row['rule']}] {row['fetched_at'][:16]} {row['title'][:80]}\n"
                f"      {row['url']}"
            )
    return 0
