"""Specification of matching: what each query form finds, and the hits it reports."""

from __future__ import annotations

import logging

import pytest

from monitor.rules import Hit, RuleCompileError, RuleSpec, compile_rules
from monitor.rules.budget import RuleBudgetStats


def _matches(query: str, body: str = "", **fields: str) -> bool:
    ruleset = compile_rules([RuleSpec("r", query)], {"us_forces": ["US troops", "US base*"]})
    return bool(ruleset.match({"body": body, **fields}))


def _hits(query: str, **fields: str) -> list[Hit]:
    ruleset = compile_rules([RuleSpec("r", query)])
    (match,) = ruleset.match(fields)
    return match.hits


def test_word_matches_whole_tokens_only() -> None:
    assert _matches("attack", "an attack on the base")
    assert not _matches("attack", "the attacks continued")


def test_prefix_matches_longer_words() -> None:
    assert _matches("attack*", "the attackers fled")


def test_phrase_needs_consecutive_tokens() -> None:
    assert _matches('"roadside bomb"', "a roadside bomb exploded")
    assert not _matches('"roadside bomb"', "a bomb by the roadside")


def test_wildcard_inside_a_phrase() -> None:
    assert _matches('"roadside bomb*"', "two roadside bombings")


def test_punctuation_between_phrase_words_is_ignored() -> None:
    assert _matches('"attacks on us troops"', "attacks on U.S. troops")


def test_us_initialism_matches_plain_us() -> None:
    assert _matches("U.S.", "US forces") and _matches("US", "the U.S forces")


def test_possessive_in_text_matches_the_bare_word() -> None:
    assert _matches('"israel onslaught"', "Israel’s onslaught on Gaza")


def test_hyphenated_text_matches_parts_whole_and_joined() -> None:
    body = "a drone-strike hit the base"
    assert _matches("drone", body) and _matches("strike", body)
    assert _matches('"drone strike"', body) and _matches("drone-strike", body)
    assert _matches("dronestrike", body)


def test_hyphenated_rule_word_matches_the_spaced_and_the_joined_text() -> None:
    assert _matches("e-mail", "send an e mail") and _matches("e-mail", "send an email")


def test_implicit_and_needs_every_term() -> None:
    assert _matches("bomb base", "the bomb near the base")
    assert not _matches("bomb base", "the bomb")


def test_or_needs_any_term() -> None:
    assert _matches("rocket OR mortar", "a mortar round")


def test_not_excludes() -> None:
    assert not _matches("troops NOT exercise", "troops on exercise")
    assert _matches("troops NOT exercise", "troops under fire")


def test_near_counts_tokens_between_the_operands() -> None:
    assert _matches("attack NEAR/2 troops", "attack on US troops")
    assert not _matches("attack NEAR/1 troops", "attack on US troops")


def test_near_is_in_any_order() -> None:
    assert _matches("troops NEAR/2 attack", "attack on US troops")


def test_onear_is_in_order() -> None:
    assert _matches("attack ONEAR/2 troops", "attack on US troops")
    assert not _matches("troops ONEAR/2 attack", "attack on US troops")


def test_near_operands_may_be_groups() -> None:
    assert _matches('(rocket OR mortar) NEAR/3 ("US base" OR convoy)', "mortar fire hit a US base")


def test_nested_near_measures_from_the_inner_pair() -> None:
    assert _matches("(rocket NEAR/1 attack) NEAR/2 base", "a rocket attack on the base")
    assert not _matches("(rocket NEAR/1 attack) NEAR/1 base", "a rocket attack on the base")


def test_near_does_not_cross_fields() -> None:
    assert not _matches("attack NEAR/5 troops", "troops", title="attack")


def test_near_does_not_pair_a_token_with_itself() -> None:
    assert not _matches("troops NEAR/3 troop*", "troops")


def test_field_scope_restricts_where_a_term_is_found() -> None:
    assert _matches("title:attack", title="Attack on base")
    assert not _matches("title:attack", "attack on base", title="News")


def test_default_scope_is_title_summary_and_body_not_url() -> None:
    assert _matches("attack", summary="attack")
    assert not _matches("attack", url="https://example.org/attack")
    assert _matches("url:attack", url="https://example.org/attack")


def test_entity_matches_any_alias_including_wildcards() -> None:
    assert _matches("entity:us_forces", "near the US bases in Syria")


def test_unknown_entity_is_an_error_with_a_suggestion() -> None:
    with pytest.raises(RuleCompileError) as info:
        compile_rules([RuleSpec("r", "entity:us_force")], {"us_forces": ["US troops"]})
    (error,) = info.value.errors
    assert error.message == "unknown entity 'us_force'"
    assert error.hint == "did you mean 'us_forces'?"


def test_regex_runs_on_the_raw_text() -> None:
    assert _matches(r"/\bU\.S\. troops\b/", "attacks on U.S. troops")
    assert not _matches(r"/\bU\.S\. troops\b/", "attacks on US troops")


def test_regex_flags() -> None:
    assert _matches("/us troops/i", "attacks on US troops")


def test_invalid_regex_points_into_the_pattern() -> None:
    with pytest.raises(RuleCompileError) as info:
        compile_rules([RuleSpec("r", "a /(x/")])
    (error,) = info.value.errors
    # regex reports the missing ")" where the pattern ends: at the closing slash.
    assert error.message == "invalid regex: missing )" and error.offset == 5


def test_catastrophic_regex_is_abandoned_as_no_match(caplog: pytest.LogCaptureFixture) -> None:
    # Exponential backtracking: without the guard this runs for longer than the universe.
    ruleset = compile_rules([RuleSpec("r", "/(a|aa)+$/")])
    RuleBudgetStats.reset()  # the log names a rule once per period, process-wide
    with caplog.at_level(logging.WARNING):
        assert ruleset.match({"body": "a" * 60 + "!"}) == []
    assert "gave up" in caplog.text


def test_hits_carry_field_span_in_the_original_text_and_leaf() -> None:
    title = "Attacks on U.S. Troops Continue"
    hits = _hits("attack* NEAR/3 US", title=title)
    assert [(h.field, title[h.start : h.end], h.leaf) for h in hits] == [
        ("title", "Attacks", "attack*"),
        ("title", "U.S.", "US"),
    ]


def test_hits_of_a_near_are_only_the_pairs_within_reach() -> None:
    body = "attack. " + "word " * 20 + "troops attacked"
    hits = _hits("attack* NEAR/1 troops", body=body)
    assert [body[h.start : h.end] for h in hits] == ["troops", "attacked"]


def test_every_broken_rule_is_reported_and_none_dropped() -> None:
    specs = [RuleSpec("ok", "a"), RuleSpec("b1", "a AND"), RuleSpec("b2", "tittle:x")]
    with pytest.raises(RuleCompileError) as info:
        compile_rules(specs)
    assert [e.rule for e in info.value.errors] == ["b1", "b2"]


def test_duplicate_rule_names_are_an_error() -> None:
    with pytest.raises(RuleCompileError):
        compile_rules([RuleSpec("r", "a"), RuleSpec("r", "b")])


def test_bad_entity_alias_is_an_error() -> None:
    with pytest.raises(RuleCompileError) as info:
        compile_rules([RuleSpec("r", "entity:x")], {"x": ["ok", "b*d"]})
    assert info.value.errors[0].rule == "entity:x"


def test_rule_names_keep_their_order() -> None:
    ruleset = compile_rules([RuleSpec("b", "x"), RuleSpec("a", "y")])
    assert ruleset.rule_names == ["b", "a"]


def test_rules_without_required_tokens_are_still_evaluated() -> None:
    ruleset = compile_rules([RuleSpec("n", "NOT sports"), RuleSpec("r", "/\\d{4}/")])
    assert [m.rule for m in ruleset.match({"body": "In 2004, troops"})] == ["n", "r"]
