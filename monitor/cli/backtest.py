"""`monitor backtest`: what the current rules would have alerted on, over stored articles."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from monitor.alerting import Action, Replay, Route, build_routes
from monitor.checks import compile_settings
from monitor.config import load_config, parse_duration
from monitor.rules import RuleSet
from monitor.store import Store
from monitor.store.articles import stored_article


def cmd_backtest(args: argparse.Namespace) -> int:
    return backtest(args.config, since=args.since, rules=args.rule, fmt=args.format)


def _replay(
    ruleset: RuleSet, routes: dict[str, Route], articles: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The stored articles, oldest first, through the rules and the daemon's own alert
    decisions (`alerting.decide` via `Replay`): one row per decision."""
    replay = Replay(routes)
    out: list[dict[str, Any]] = []
    for a in reversed(articles):
        fields = stored_article(a).fields()
        matches = {m.rule: m for m in ruleset.match(fields) if m.rule in routes}
        decisions = replay.article(
            story_id=a["story_id"] or -a["id"],
            feed_id=a["feed_id"],
            fetched_at=a["fetched_at"],
            matched=list(matches),
        )
        for rule, decision in decisions:
            m = matches.get(rule)
            out.append(
                {
                    "rule": rule,
                    "article_id": a["id"],
                    "story_id": a["story_id"],
                    "title": a["title"],
                    "url": a["url"],
                    "matched": m is not None,
                    "decision": str(decision.action),
                    "why": decision.reason,
                    "would_alert": decision.action is Action.ALERT,
                    "fetched_at": datetime.fromtimestamp(a["fetched_at"], UTC).isoformat(),
                    "hits": [
                        {"field": h.field, "leaf": h.leaf, "start": h.start, "end": h.end}
                        for h in (m.hits[:20] if m else [])
                    ],
                }
            )
    return out


def backtest(path: str, *, since: str, rules: list[str] | None, fmt: str) -> int:
    """What the current rules would have alerted on, over the stored articles: the daemon's
    own decisions (min_sources, cooldown, updates), replayed in the order they were stored."""
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
    routes = {n: r for n, r in build_routes(checked.settings).items() if not wanted or n in wanted}
    out = _replay(checked.ruleset, routes, articles)
    if fmt == "json":
        for row in out:
            print(json.dumps(row))
        return 0
    print(f"{len(articles)} stored articles since {since}:")
    _print_backtest(out, sorted(wanted or set(checked.ruleset.rule_names)))
    return 0


def _print_backtest(out: list[dict[str, Any]], rules: list[str]) -> None:
    alerts = Counter(row["rule"] for row in out if row["would_alert"])
    matching = Counter(row["rule"] for row in out if row["matched"])
    for rule in rules:
        print(f"  {rule:<32} {alerts[rule]:>5} alerts ({matching[rule]} matching articles)")
    for row in out:
        if row["would_alert"]:
            print(
                f"  [{row['rule']}] {row['fetched_at'][:16]} {row['title'][:80]}\n"
                f"      {row['url']}"
            )
