"""Rules as tested code: running each rule's `examples: {match, no_match}` against it.

Owns how an example becomes article fields (a plain string is a body; an object names its
fields) and the report of the examples that misbehave, with the explanation of why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from monitor.config import ExampleDoc, RuleConfig
from monitor.rules.compile import RuleSet

_PREVIEW = 80


@dataclass(frozen=True, slots=True)
class ExampleFailure:
    """Example `index` of `expected` ("match" or "no_match") of `rule` did the opposite."""

    rule: str
    index: int
    expected: Literal["match", "no_match"]
    text_preview: str
    explanation: str = ""

    def __str__(self) -> str:
        verb = (
            "should match but does not"
            if self.expected == "match"
            else ("should not match but does")
        )
        return (
            f"rule {self.rule!r}: {self.expected} example {self.index + 1} {verb}: "
            f"{self.text_preview!r}"
        )


def example_fields(example: str | ExampleDoc) -> dict[str, str]:
    """The article fields of an example: a string is the body (so `text:` sees it)."""
    if isinstance(example, str):
        return {"title": "", "summary": "", "body": example}
    return {
        "title": example.title,
        "summary": example.summary,
        "body": example.body,
        "url": example.url,
        "feed": example.feed,
        "author": example.author,
        "tags": "\n".join(example.tags),
    }


def _preview(fields: dict[str, str]) -> str:
    text = " / ".join(v for v in (fields["title"], fields["summary"], fields["body"]) if v)
    text = " ".join(text.split())
    return text if len(text) <= _PREVIEW else text[: _PREVIEW - 1] + "…"


def check_examples(ruleset: RuleSet, rules: Sequence[RuleConfig]) -> list[ExampleFailure]:
    """Every example that misbehaves, for the rules of `rules` that are in `ruleset`.

    Rules not in the set (disabled ones, which are not compiled) have nothing to test against
    and are skipped.
    """
    names = set(ruleset.rule_names)
    failures: list[ExampleFailure] = []
    for rule in rules:
        if rule.name not in names:
            continue
        cases: list[tuple[Literal["match", "no_match"], list[str | ExampleDoc]]] = [
            ("match", list(rule.examples.match)),
            ("no_match", list(rule.examples.no_match)),
        ]
        for expected, examples in cases:
            for index, example in enumerate(examples):
                fields = example_fields(example)
                matched = ruleset.match_rule(fields, rule.name) is not None
                if matched != (expected == "match"):
                    failures.append(
                        ExampleFailure(
                            rule.name,
                            index,
                            expected,
                            _preview(fields),
                            ruleset.explain(fields, rule.name),
                        )
                    )
    return failures
