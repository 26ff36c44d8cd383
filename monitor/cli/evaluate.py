"""`monitor evaluate`: precision, recall and F1 of each rule on labelled articles, and every
false negative and false positive with the rule's explanation (docs/evaluation.md).

Labelled data: a labels file (`--labels`), the analysts' stored verdicts (`monitor feedback`),
and, reported apart, each rule's `examples:`. Heavy imports happen in `run`, so registering
the command costs nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from monitor.config import RuleConfig, Settings
    from monitor.rules.compile import RuleSet
    from monitor.rules.labels import LabelledDoc
    from monitor.rules.measure import Report


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from monitor.checks import compile_settings
    from monitor.config import load_config
    from monitor.rules.labels import LabelsError, read_labels

    out = out or sys.stdout
    settings = load_config(args.config)
    ruleset = compile_settings(settings, run_examples=False).ruleset
    rules = _selected(settings, args.rule)
    if rules is None:
        return 1
    labelled: list[LabelledDoc] = []
    if args.labels:
        try:
            labelled = read_labels(args.labels, csv_path=args.csv)
        except LabelsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    if not args.no_feedback:
        labelled += feedback_docs(settings, [r.name for r in rules])
    reports = _measure_all(ruleset, rules, labelled)
    if not labelled and not any(r.total for r in reports):
        print(
            "error: no labelled data: give --labels FILE, store verdicts with "
            "`monitor feedback`, or add examples: to the rules",
            file=sys.stderr,
        )
        return 1
    _print_reports(reports, args.format, out)
    return _gate(reports, args.min_f1)


def _measure_all(
    ruleset: RuleSet, rules: list[RuleConfig], labelled: list[LabelledDoc]
) -> list[Report]:
    """Per rule: its report on the labelled articles meant for it (if any), then on its
    examples."""
    from monitor.rules.measure import measure

    reports: list[Report] = []
    for rule in rules:
        docs = [d for d in labelled if d.rule in (None, rule.name)]
        if docs:
            reports.append(measure(ruleset, rule.name, docs, "labels"))
        reports.append(measure(ruleset, rule.name, rule_examples(rule), "examples"))
    return reports


def _print_reports(reports: list[Report], fmt: str, out: TextIO) -> None:
    if fmt == "json":
        for report in reports:
            print(json.dumps(report.to_dict(), ensure_ascii=False), file=out)
    else:
        for report in reports:
            print_report(report, out)


def _selected(settings: Settings, names: list[str] | None) -> list[RuleConfig] | None:
    rules = settings.active_rules
    if not names:
        return rules
    known = {r.name: r for r in rules}
    unknown = [n for n in names if n not in known]
    if unknown:
        print(
            f"error: no enabled rule named {', '.join(map(repr, unknown))} "
            f"(rules: {', '.join(known) or 'none'})",
            file=sys.stderr,
        )
        return None
    return [known[n] for n in names]


def rule_examples(rule: RuleConfig) -> list[LabelledDoc]:
    from monitor.rules.examples import example_fields
    from monitor.rules.labels import example_docs

    cases = [("match", i, example_fields(e)) for i, e in enumerate(rule.examples.match)]
    cases += [("no_match", i, example_fields(e)) for i, e in enumerate(rule.examples.no_match)]
    return example_docs(rule.name, cases)


def feedback_docs(settings: Settings, rules: list[str]) -> list[LabelledDoc]:
    """The stored verdicts on alerts of `rules`, if the database exists."""
    from monitor.rules.labels import LabelledDoc
    from monitor.store import Store

    if not database_exists(settings.database):
        return []
    store = Store(settings.database)
    try:
        verdicts = [v for v in store.feedback.labelled() if v.rule in rules]
    finally:
        store.close()
    return [
        LabelledDoc(
            source=f"feedback on alert {v.alert_id}",
            ident=f"alert {v.alert_id}",
            fields={"title": v.title, "summary": v.summary, "body": v.body, "url": v.url},
            label=v.relevant,
            rule=v.rule,
            note=v.note or "",
        )
        for v in verdicts
    ]


def database_exists(url: str) -> bool:
    """False for a SQLite file that does not exist yet (evaluate must not create one)."""
    from sqlalchemy.engine import make_url

    from monitor.store.engine import normalise_url

    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() != "sqlite":
        return True
    database = parsed.database or ""
    return bool(database) and database != ":memory:" and Path(database).exists()


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def print_report(report: Report, out: TextIO) -> None:
    what = "labelled data" if report.data == "labels" else "its examples"
    print(f"rule {report.rule!r} on {what} ({report.total} articles)", file=out)
    print(
        f"  precision {_fmt(report.precision)}  recall {_fmt(report.recall)}  "
        f"F1 {_fmt(report.f1)}   tp {report.tp}  fp {report.fp}  fn {report.fn}  "
        f"tn {report.tn}",
        file=out,
    )
    for expected, title in ((True, "false negatives"), (False, "false positives")):
        misses = [m for m in report.misses if m.expected is expected]
        if not misses:
            continue
        print(f"  {title} ({len(misses)}):", file=out)
        for m in misses:
            text = " ".join(m.doc.text().split())
            preview = text if len(text) <= 160 else text[:159] + "…"
            print(f"  - {m.doc.source} [{m.doc.ident}] {preview!r}", file=out)
            if m.doc.note:
                print(f"      note: {m.doc.note}", file=out)
            for line in m.explanation.splitlines():
                print(f"      {line}", file=out)
    print(file=out)


def _gate(reports: list[Report], min_f1: float | None) -> int:
    """1 when a rule's F1 on its labelled data (its examples when it has none) is below."""
    if min_f1 is None:
        return 0
    failed = False
    by_rule: dict[str, Report] = {}
    for report in reports:
        if report.data == "labels" or report.rule not in by_rule:
            by_rule[report.rule] = report
    for rule, report in by_rule.items():
        f1 = report.f1
        if f1 is None or f1 < min_f1:
            print(
                f"rule {rule!r}: F1 {_fmt(f1)} on {report.data} is below --min-f1 {min_f1}",
                file=sys.stderr,
            )
            failed = True
    return 1 if failed else 0
