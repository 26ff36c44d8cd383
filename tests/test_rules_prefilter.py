"""Specification of the prefilter: it only skips rules that could not have matched."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from corpora import DATA

from monitor.rules import RuleSpec, compile_rules

AG_TRAIN = Path("news/ag_news/train_subset.csv")

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


def _articles(limit: int, root: Path = DATA) -> list[dict[str, str]]:
    with (root / AG_TRAIN).open(newline="", encoding="utf-8") as f:
        rows = [row["text"] for _, row in zip(range(limit), csv.DictReader(f), strict=False)]
    # Titles and bodies in AG News are joined; use the first 8 words as a title.
    return [{"title": " ".join(t.split()[:8]), "body": t} for t in rows]


def _prefiltered_matches_equal_evaluating_every_rule(articles: list[dict[str, str]]) -> None:
    ruleset = compile_rules(RULES)
    for fields in articles:
        everything = [r.name for r in RULES if ruleset.match_rule(fields, r.name) is not None]
        assert [m.rule for m in ruleset.match(fields)] == everything


def test_prefiltered_matches_equal_evaluating_every_rule() -> None:
    _prefiltered_matches_equal_evaluating_every_rule(_articles(1500))


@pytest.mark.corpora
def test_prefiltered_matches_equal_evaluating_every_rule_on_all_of_ag_news(
    corpora: Path,
) -> None:
    articles = _articles(100_000, corpora)
    assert len(articles) == 8815
    _prefiltered_matches_equal_evaluating_every_rule(articles)


def test_prefilter_keeps_a_rule_whose_key_is_a_prefix_of_a_longer_token() -> None:
    ruleset = compile_rules([RuleSpec("r", "bomb*"), RuleSpec("s", '"car bomb"')])
    assert [m.rule for m in ruleset.match({"body": "car bombings"})] == ["r"]


def test_prefilter_finds_a_rule_word_that_only_occurs_as_a_joined_hyphen_alias() -> None:
    ruleset = compile_rules([RuleSpec("r", "email")])
    assert [m.rule for m in ruleset.match({"body": "an e-mail scam"})] == ["r"]


# Rules whose needs multiply out past the prefilter's limit (entities under AND and NEAR, OR
# of phrases under AND), so parts of them become shared derived atoms; and scoped, prefixed
# and negated forms mixed in. The prefilter must still only skip rules that cannot match.
ENTITIES = {
    "iraq": ["Iraq", "Iraqi", "Baghdad", "Fallujah", "Falluja", "Najaf", "Mosul"],
    "tech": ["Microsoft", "Google", "Apple", "IBM", "Intel", "Sun Microsystems", "Oracle"],
    "people": ["George W. Bush", "John Kerry", "Tony Blair", "Vladimir Putin", "Kofi Annan"],
}
DERIVED_RULES = [
    RuleSpec("entity-near", "entity:iraq NEAR/8 (attack* OR bomb* OR kill*)"),
    RuleSpec("entities-and", "entity:tech AND entity:people"),
    RuleSpec("entity-title", "title:entity:tech AND (profit* OR loss OR earnings)"),
    RuleSpec(
        "wide-and",
        '("oil price*" OR "crude oil" OR opec OR barrel*) AND '
        '(rise* OR fall* OR "record high" OR surge*) AND (Reuters OR AP OR AFP)',
    ),
    RuleSpec("entity-or-word", "entity:people OR election*"),
    RuleSpec("entity-not", "entity:iraq AND NOT (soldier* OR troop*)"),
    RuleSpec("nested", '(entity:tech NEAR/5 (buy* OR acqui*)) OR ("stock market" AND entity:iraq)'),
    RuleSpec("same-entity-twice", "entity:iraq NEAR/3 entity:iraq"),
]


def _derived_matches(articles: list[dict[str, str]]) -> int:
    """How many (article, rule) matches; the prefiltered ones equal evaluating every rule."""
    ruleset = compile_rules(DERIVED_RULES, ENTITIES)
    matched = 0
    for fields in articles:
        everything = [
            r.name for r in DERIVED_RULES if ruleset.match_rule(fields, r.name) is not None
        ]
        assert [m.rule for m in ruleset.match(fields)] == everything
        matched += len(everything)
    return matched


def test_prefilter_with_derived_atoms_equals_evaluating_every_rule() -> None:
    matched = _derived_matches(_articles(3000))
    assert matched > 100  # the rules are not vacuous on this corpus


@pytest.mark.corpora
def test_prefilter_with_derived_atoms_equals_evaluating_every_rule_on_all_of_ag_news(
    corpora: Path,
) -> None:
    matched = _derived_matches(_articles(100_000, corpora))
    assert matched > 1000  # the rules are not vacuous on this corpus


def test_index_key_choice_prefers_the_rarer_word_by_document_frequency() -> None:
    from monitor.rules.frequency import default_frequency

    freq = default_frequency()
    # Length alone would pick "government"; news says the short name is far rarer.
    assert freq.share("enron") < freq.share("government")
    assert freq.share("zzyzxqq") < freq.share("enron")  # unknown: rarer than anything known
    assert freq.prefix_share("govern") >= freq.share("government")
