"""Whole-config validation that needs other stages: rules compile, examples behave, templates
compile, digest schedules parse. Used by `monitor check`, at start-up, and on reload (a reload
that fails here keeps the running config).
"""

from __future__ import annotations

from dataclasses import dataclass

from apscheduler.triggers.cron import CronTrigger

from monitor.config import Settings
from monitor.errors import ConfigError
from monitor.notify import check_templates
from monitor.rules import RuleCompileError, RuleSet, RuleSpec, compile_rules
from monitor.rules.compile import ScorerError
from monitor.rules.examples import check_examples
from monitor.rules.training import scorer_spec


@dataclass(slots=True)
class CheckedConfig:
    settings: Settings
    ruleset: RuleSet


def rule_specs(settings: Settings) -> list[RuleSpec]:
    return [
        RuleSpec(name=r.name, query=r.query, scorer=scorer_spec(settings, i))
        for i, r in enumerate(settings.rules)
        if r.enabled
    ]


def compile_settings(settings: Settings, *, run_examples: bool = True) -> CheckedConfig:
    """Compile and cross-check a loaded config. Raises `ConfigError` with `file:line:col`s."""
    problems: list[str] = []
    src = settings.source
    index = {r.name: i for i, r in enumerate(settings.rules)}
    ruleset: RuleSet | None = None
    try:
        ruleset = compile_rules(
            rule_specs(settings), settings.entities, fold_accents=settings.fold_accents
        )
    except RuleCompileError as exc:
        for err in exc.errors:
            i = index.get(err.rule)
            if isinstance(err, ScorerError) and i is not None:
                where = src.positions.get(("rules", i, "scorer", "model")) or src.locate(
                    ("rules", i)
                )
                problems.append(f"{where}: rule {err.rule!r}: {err.message}")
                continue
            query = settings.rules[i].query if i is not None else ""
            where = src.query_pos(i, err.offset) if i is not None else src.locate(("rules",))
            problems.append(f"{where}: rule {err.rule!r}: {err.message}\n{err.render(query)}")
    if ruleset is not None and run_examples:
        for fail in check_examples(ruleset, settings.active_rules):
            i = index[fail.rule]
            where = src.locate(("rules", i, "examples", fail.expected, fail.index))
            verb = (
                "should match but does not"
                if fail.expected == "match"
                else "should not match but does"
            )
            problems.append(
                f"{where}: rule {fail.rule!r}: example {fail.expected}[{fail.index}]"
                f" {verb}: {fail.text_preview!r}"
                + (f"\n  {fail.explanation.strip()}" if fail.explanation.strip() else "")
            )
    for name, channel in settings.channels.items():
        for msg in check_templates(channel):
            problems.append(
                f"{src.locate(('channels', name, 'template'))}: channel {name!r}: {msg}"
            )
        if channel.digest is not None:
            try:
                CronTrigger.from_crontab(channel.digest, timezone="UTC")
            except ValueError as exc:
                problems.append(
                    f"{src.locate(('channels', name, 'digest'))}: channel {name!r}: "
                    f"invalid digest schedule {channel.digest!r}: {exc}"
                )
    if problems:
        raise ConfigError(problems)
    assert ruleset is not None
    return CheckedConfig(settings=settings, ruleset=ruleset)
