"""Specification of the query parser: precedence and errors that point at the problem."""

from __future__ import annotations

import pytest

from monitor.rules import RuleCompileError, RuleError, parse
from monitor.rules.query import And, EntityRef, Near, Not, Or, Phrase, Regex, Scope, Word


def _error(query: str) -> RuleError:
    with pytest.raises(RuleCompileError) as info:
        parse(query, "r")
    assert len(info.value.errors) == 1
    return info.value.errors[0]


def test_adjacent_terms_are_anded() -> None:
    tree = parse("roadside bomb")
    assert isinstance(tree, And) and len(tree.children) == 2


def test_or_binds_looser_than_and() -> None:
    tree = parse("a b OR c")
    assert isinstance(tree, Or)
    assert isinstance(tree.children[0], And)


def test_near_binds_tighter_than_and() -> None:
    tree = parse("a b NEAR/3 c")
    assert isinstance(tree, And)
    assert isinstance(tree.children[1], Near) and tree.children[1].distance == 3


def test_not_binds_tighter_than_near() -> None:
    tree = parse("NOT a OR b")
    assert isinstance(tree, Or) and isinstance(tree.children[0], Not)


def test_onear_is_ordered_and_takes_groups() -> None:
    tree = parse("(a OR b) ONEAR/2 (c d)")
    assert isinstance(tree, Near) and tree.ordered
    assert isinstance(tree.left, Or) and isinstance(tree.right, And)


def test_prefix_and_phrase_with_wildcard() -> None:
    tree = parse('"roadside bomb*"')
    assert isinstance(tree, Phrase)
    assert tree.words == (Word("roadside"), Word("bomb", prefix=True))


def test_bare_hyphenated_word_also_matches_its_joined_form() -> None:
    tree = parse("e-mail")
    assert isinstance(tree, Phrase)
    assert tree.words == (Word("e"), Word("mail"))
    assert tree.alternatives == ((Word("email"),),)


def test_field_scope_applies_to_a_group() -> None:
    tree = parse("title:(a OR b)")
    assert isinstance(tree, Scope) and tree.fields == ("title",)


def test_text_scope_is_title_summary_and_body() -> None:
    tree = parse("text:a")
    assert isinstance(tree, Scope) and tree.fields == ("title", "summary", "body")


def test_entity_and_regex_leaves() -> None:
    tree = parse(r"entity:us_forces /\d+ dead/i")
    assert isinstance(tree, And)
    entity, regex = tree.children
    assert isinstance(entity, EntityRef) and entity.name == "us_forces"
    assert isinstance(regex, Regex) and regex.pattern == r"\d+ dead" and regex.flags == "i"


def test_escaped_slash_stays_inside_the_regex() -> None:
    tree = parse(r"url:/\/world\//")
    assert isinstance(tree, Scope) and isinstance(tree.child, Regex)
    assert tree.child.pattern == r"\/world\/"


def test_empty_query_is_an_error() -> None:
    assert _error("   ").message == "empty query"


def test_near_without_number_points_at_the_operator() -> None:
    err = _error("attack NEAR/ troops")
    assert (err.offset, err.message) == (7, "NEAR/ needs a number")
    assert err.hint is not None and "NEAR/5" in err.hint


def test_unknown_field_suggests_the_closest() -> None:
    err = _error("a tittle:b")
    assert err.offset == 2
    assert err.message == "unknown field 'tittle'"
    assert err.hint == "did you mean 'title'?"


def test_unclosed_parenthesis_points_at_it() -> None:
    err = _error("a (b OR c")
    assert err.offset == 2 and "never closed" in err.message


def test_stray_closing_parenthesis_points_at_it() -> None:
    err = _error("a b) c")
    assert err.offset == 3 and "no matching '('" in err.message


def test_dangling_operator_at_the_end() -> None:
    err = _error("a AND")
    assert err.offset == 2 and err.message.startswith("dangling operator")


def test_dangling_operator_at_the_start() -> None:
    err = _error("OR b")
    assert err.offset == 0 and err.message.startswith("dangling operator")


def test_two_operators_in_a_row_point_at_the_second() -> None:
    assert _error("a AND OR b").offset == 6


def test_unterminated_quote() -> None:
    err = _error('a "roadside bomb')
    assert (err.offset, err.message) == (2, "unterminated quote")


def test_unterminated_regex() -> None:
    err = _error("a /bomb")
    assert (err.offset, err.message) == (2, "unterminated regex")


def test_lowercase_operator_is_an_error_not_a_silent_word() -> None:
    err = _error("attack or bomb")
    assert err.offset == 7 and err.hint is not None and "OR" in err.hint


def test_lowercase_near_without_slash_is_a_word() -> None:
    assert parse("near") == Phrase((Word("near"),), "near", 0)


def test_wildcard_inside_a_word_is_an_error() -> None:
    assert _error("at*ack").offset == 2


def test_one_letter_prefix_is_too_short() -> None:
    assert "too short" in _error("a*").message


def test_not_as_a_near_operand_is_an_error() -> None:
    assert "NOT cannot be a NEAR operand" in _error("a NEAR/3 NOT b").message


def test_render_puts_a_caret_under_the_offset_and_the_hint_below() -> None:
    query = "attack NEAR/ troops"
    rendered = _error(query).render(query)
    line, caret, hint = rendered.splitlines()
    assert line == "  attack NEAR/ troops"
    assert caret == "         ^"
    assert hint.startswith("  hint: ")


def test_render_shows_only_the_line_of_a_multiline_query() -> None:
    query = "(attack* OR bomb*)\nNEAR/x troops"
    err = _error(query)
    assert err.render(query).splitlines()[:2] == ["  NEAR/x troops", "  ^"]
