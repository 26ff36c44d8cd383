"""Specification of the prefilter: it only skips rules that could not have matched."""

from __future__ import annotations

import csv
from pathlib import Path

from monitor.rules import RuleSpec, compile_rules

AG_TRAIN = Path("/work/shared/corpora/news/ag_news/train_subset.csv")

RULES = [
    RuleSpec("prefix", "attack* NEAR/5 (US OR American)"),
    RuleSpec("phrase", '"car bomb*" OR "roadside bomb*"'),
    RuleSpec("scoped", "title:(oil OR crude) AND body:price*"),
    RuleSpec("hyphen", "al-Qaeda OR alqaeda"),
    RuleSpec("negated", "NOT (the OR a)"),
    RuleSpec("regex", r"/\b\d{2,} (?:killed|dead)\b/"),
    RuleSpec("common-and-rare", "the AND (Fallujah OR Falluja)"),
    RuleSpec("ordered", "(kill* OR wound*) ONEAR/3 (soldier* OR troop*)"),
]


def _articles(limit: int) -> list[dict[str, str]]:
    with AG_TRAIN.open(newline="", encoding="utf-8") as f:
        rows = [row["text"] for _, row in zip(range(limit), csv.DictReader(f), strict=False)]
    # Titles and bodies in AG News are joined; use the first 8 words as a title.
    return [{"title": " ".join(t.split()[:8]), "body": t} for t in rows]


def test_prefiltered_matches_equal_evaluating_every_rule() -> None:
    ruleset = compile_rules(RULES)
    for fields in _articles(1500):
        everything = [r.name for r in RULES if ruleset.match_rule(fields, r.name) is not None]
        assert [m.rule for m in ruleset.match(fields)] == everything


def test_prefilter_keeps_a_rule_whose_key_is_a_prefix_of_a_longer_token() -> None:
    ruleset = compile_rules([RuleSpec("r", "bomb*"), RuleSpec("s", '"car bomb"')])
    assert [m.rule for m in ruleset.match({"body": "car bombings"})] == ["r"]


def test_prefilter_finds_a_rule_word_that_only_occurs_as_a_joined_hyphen_alias() -> None:
    ruleset = compile_rules([RuleSpec("r", "email")])
    assert [m.rule for m in ruleset.match({"body": "an e-mail scam"})] == ["r"]
