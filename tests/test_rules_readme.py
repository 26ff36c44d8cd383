"""Every rule-language example in the README's rules section is executed (docs cannot rot).

Blocks fenced as ```yaml rule-example hold a query (and optional entities) with texts that
must match and must not; ```yaml rule-error blocks hold a query and the error it must raise.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.config import ExampleDoc, Examples, RuleConfig
from monitor.rules import RuleCompileError, RuleSpec, compile_rules
from monitor.rules.examples import check_examples

README = Path(__file__).resolve().parent.parent / "README.md"
_FENCE = re.compile(r"^```yaml (rule-example|rule-error)\n(.*?)^```$", re.M | re.S)


def _blocks(kind: str) -> list[dict[str, Any]]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("<!-- rules:start -->") : text.index("<!-- rules:end -->")]
    return [yaml.safe_load(body) for k, body in _FENCE.findall(section) if k == kind]


EXAMPLES = _blocks("rule-example")
ERRORS = _blocks("rule-error")


def test_the_readme_has_examples_of_every_form() -> None:
    queries = " ".join(b["query"] for b in EXAMPLES)
    for form in ("*", '"', " OR ", " NOT ", "NEAR/", "ONEAR/", "title:", "entity:", "/"):
        assert form in queries, form
    assert len(ERRORS) >= 4


@pytest.mark.parametrize("block", EXAMPLES, ids=[b["query"] for b in EXAMPLES])
def test_readme_example_behaves(block: dict[str, Any]) -> None:
    def example(item: Any) -> str | ExampleDoc:
        return item if isinstance(item, str) else ExampleDoc(**item)

    rule = RuleConfig(
        name="readme",
        query=block["query"],
        examples=Examples(
            match=[example(x) for x in block.get("match", [])],
            no_match=[example(x) for x in block.get("no_match", [])],
        ),
    )
    assert rule.examples.match or rule.examples.no_match
    ruleset = compile_rules([RuleSpec(rule.name, rule.query)], block.get("entities", {}))
    failures = check_examples(ruleset, [rule])
    assert not failures, "\n\n".join(f"{f}\n{f.explanation}" for f in failures)


@pytest.mark.parametrize("block", ERRORS, ids=[b["query"] for b in ERRORS])
def test_readme_error_is_raised_as_documented(block: dict[str, Any]) -> None:
    with pytest.raises(RuleCompileError) as info:
        compile_rules([RuleSpec("readme", block["query"])], block.get("entities", {}))
    (error,) = info.value.errors
    assert error.message == block["error"]
    if "hint" in block:
        assert error.hint == block["hint"]
