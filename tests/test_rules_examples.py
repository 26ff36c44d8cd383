"""Specification of `check_examples`: a rule's examples are run and misbehaviour reported."""

from __future__ import annotations

from monitor.config import ExampleDoc, Examples, RuleConfig
from monitor.rules import RuleSpec, compile_rules
from monitor.rules.examples import ExampleFailure, check_examples, example_fields


def _check(
    query: str, match: list[str | ExampleDoc], no_match: list[str | ExampleDoc]
) -> list[ExampleFailure]:
    rule = RuleConfig(name="r", query=query, examples=Examples(match=match, no_match=no_match))
    return check_examples(compile_rules([RuleSpec("r", query)]), [rule])


def test_examples_that_behave_report_nothing() -> None:
    assert _check("attack*", ["an attack on troops"], ["troops on exercise"]) == []


def test_a_match_example_that_does_not_match_is_reported() -> None:
    (failure,) = _check("attack*", ["troops on exercise"], [])
    assert (failure.rule, failure.index, failure.expected) == ("r", 0, "match")
    assert failure.text_preview == "troops on exercise"
    assert "did not match" in failure.explanation


def test_a_no_match_example_that_matches_is_reported_with_its_index() -> None:
    (failure,) = _check("attack*", [], ["fine", "an attack"])
    assert (failure.index, failure.expected) == (1, "no_match")


def test_a_plain_example_is_a_body_seen_by_the_default_text_scope() -> None:
    assert example_fields("text")["body"] == "text"
    assert _check("text:attack", ["attack"], []) == []
    assert len(_check("title:attack", ["attack"], [])) == 1


def test_an_example_object_fills_the_named_fields() -> None:
    assert (
        _check("title:attack AND body:troops", [ExampleDoc(title="Attack", body="on troops")], [])
        == []
    )


def test_rules_not_in_the_rule_set_are_skipped() -> None:
    rule = RuleConfig(name="disabled", query="x", examples=Examples(match=["y"]))
    assert check_examples(compile_rules([RuleSpec("r", "x")]), [rule]) == []


def test_preview_is_shortened_to_one_line() -> None:
    (failure,) = _check("nothing", ["word\n" * 50], [])
    assert "\n" not in failure.text_preview and len(failure.text_preview) <= 80
