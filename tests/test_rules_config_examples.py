"""The shipped rules in config/rules/ compile, and every example in them behaves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from corpora import DATA

from monitor.config import RuleConfig
from monitor.rules import RuleSet, RuleSpec, compile_rules
from monitor.rules.examples import check_examples

CONFIG = Path(__file__).resolve().parent.parent / "config"
SEED = DATA / "seed" / "us-troops-attacks-article.txt"


def _load() -> tuple[list[RuleConfig], dict[str, list[str]]]:
    """Rules and entities of every YAML file under config/ that has them."""
    rules: list[RuleConfig] = []
    entities: dict[str, list[str]] = {}
    for path in sorted(CONFIG.rglob("*.yaml")):
        doc: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            continue
        rules.extend(RuleConfig(**r) for r in doc.get("rules") or [])
        for name, aliases in (doc.get("entities") or {}).items():
            assert name not in entities, f"{path}: entity {name!r} defined twice"
            entities[name] = aliases
    return rules, entities


RULES, ENTITIES = _load()


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    return compile_rules([RuleSpec(r.name, r.query) for r in RULES], ENTITIES)


def test_config_ships_the_us_troops_rule_and_other_topics() -> None:
    names = [r.name for r in RULES]
    assert "attacks-on-us-troops" in names and len(names) >= 3


@pytest.mark.parametrize("rule", RULES, ids=[r.name for r in RULES])
def test_every_example_of_the_rule_behaves(ruleset: RuleSet, rule: RuleConfig) -> None:
    assert rule.examples.match and rule.examples.no_match, "each rule carries both sides"
    failures = check_examples(ruleset, [rule])
    assert not failures, "\n\n".join(f"{f}\n{f.explanation}" for f in failures)


def test_us_troops_rule_matches_the_seed_article(ruleset: RuleSet) -> None:
    title, body = SEED.read_text(encoding="utf-8").split("\n", 1)
    assert ruleset.match_rule({"title": title, "body": body}, "attacks-on-us-troops")
