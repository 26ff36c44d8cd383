"""The rule language: queries users write, compiled into a rule set that matches articles.

`compile_rules` turns `RuleSpec`s (and the `entities:` gazetteers) into a `RuleSet`, or raises
`RuleCompileError` listing every broken rule. `RuleSet.match` returns a `Match` per matching
rule with its `Hit`s; `Match.snippet` picks the passage to show; `RuleSet.explain` says why a
rule matched or not. The language itself is described in README.md ("Rule language").
"""

from monitor.rules.compile import RuleSet, RuleSpec, compile_rules
from monitor.rules.query import RuleCompileError, RuleError, parse
from monitor.rules.result import Hit, Match, Snippet
from monitor.rules.text import fold, tokenize

__all__ = [
    "Hit",
    "Match",
    "RuleCompileError",
    "RuleError",
    "RuleSet",
    "RuleSpec",
    "Snippet",
    "compile_rules",
    "fold",
    "parse",
    "tokenize",
]
