"""Specification of explanations and snippets: why a rule matched, or why not."""

from __future__ import annotations

from monitor.rules import Hit, Match, RuleSpec, Snippet, compile_rules

RULESET = compile_rules(
    [
        RuleSpec("troops", "entity:us_forces NEAR/4 attack* NOT exercise"),
        RuleSpec("phrase", '"roadside bomb"'),
    ],
    {"us_forces": ["US troops", "US forces"]},
)


def test_explanation_of_a_match_names_the_hits() -> None:
    text = RULESET.explain({"body": "Attacks on US troops continue"}, "troops")
    assert text.splitlines()[0] == "rule 'troops': matched"
    assert "✓ entity:us_forces — found body[11:20] 'US troops'" in text
    assert "✓ attack* — found body[0:7] 'Attacks'" in text


def test_explanation_of_a_miss_says_how_far_apart_the_near_sides_were() -> None:
    body = "US troops arrived. Weeks later, far away, an attack"
    text = RULESET.explain({"body": body}, "troops")
    assert text.splitlines()[0] == "rule 'troops': did not match"
    assert "closest are 6 token(s) apart (allowed: 4)" in text


def test_explanation_of_a_miss_names_the_leaf_not_found_and_where_it_looked() -> None:
    text = RULESET.explain({"title": "A bomb", "body": "by the roadside"}, "phrase")
    assert '✗ "roadside bomb" — not found in title, summary, body' in text


def test_explanation_shows_an_excluded_term_that_was_present() -> None:
    text = RULESET.explain({"body": "US troops attack positions in an exercise"}, "troops")
    assert "✗ NOT — but present: body[33:41] 'exercise'" in text


def test_snippet_prefers_the_window_with_most_hits() -> None:
    body = "US troops. " + "filler " * 60 + "An attack on US troops and another attack."
    fields = {"title": "Attack", "body": body}
    (match,) = RULESET.match(fields)
    snippet = match.snippet(fields, width=80)
    assert snippet.field == "body"
    assert snippet.marked().endswith("An **attack** on **US troops** and another **attack**.")


def test_snippet_prefers_the_body_when_hit_counts_tie() -> None:
    fields = {"title": "Roadside bomb", "body": "A roadside bomb exploded."}
    (match,) = RULESET.match(fields)
    assert match.snippet(fields).field == "body"


def test_snippet_highlights_are_spans_within_the_snippet_text() -> None:
    body = "x " * 300 + "a roadside bomb went off " + "y " * 300
    fields = {"body": body}
    (match,) = RULESET.match(fields)
    snippet = match.snippet(fields, width=60)
    ((start, end),) = snippet.highlights
    assert snippet.text[start:end] == "roadside bomb"
    assert snippet.text.startswith("…") and snippet.text.endswith("…")
    assert len(snippet.text) <= 60 + 2 + 40


def test_snippet_flattens_newlines_without_moving_highlights() -> None:
    fields = {"body": "Line one.\nA roadside\nbomb."}
    (match,) = RULESET.match(fields)
    assert match.snippet(fields).marked() == "Line one. A **roadside bomb**."


def test_marked_uses_the_given_markers() -> None:
    snippet = Snippet("body", "an attack here", [(3, 9)])
    assert snippet.marked("<b>", "</b>") == "an <b>attack</b> here"


def test_snippet_without_hits_is_the_start_of_the_body() -> None:
    match = Match("r", [])
    snippet = match.snippet({"title": "T", "body": "Body text."})
    assert (snippet.field, snippet.text, snippet.highlights) == ("body", "Body text.", [])


def test_match_snippet_ignores_hits_outside_the_given_fields() -> None:
    match = Match("r", [Hit("body", 0, 5, "x"), Hit("title", 0, 2, "y")])
    assert match.snippet({"title": "ab"}).field == "title"


def test_snippet_does_not_start_with_the_blank_a_body_starts_with() -> None:
    fields = {"body": "\nA roadside bomb.\n"}
    (match,) = RULESET.match(fields)
    assert match.snippet(fields).marked() == "A **roadside bomb**."
