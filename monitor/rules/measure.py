"""Measuring a rule against labelled articles: counts, precision, recall, F1, and every miss
with the rule's explanation of why it did or did not match. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from monitor.rules.compile import RuleSet
from monitor.rules.labels import LabelledDoc


@dataclass(frozen=True, slots=True)
class Miss:
    """A false negative (`expected` True) or a false positive, with the explanation."""

    doc: LabelledDoc
    expected: bool
    explanation: str


@dataclass(slots=True)
class Report:
    """One rule on one set of labelled articles."""

    rule: str
    data: str  # what the set is: "labels", "examples"
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    misses: list[Miss] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def precision(self) -> float | None:
        found = self.tp + self.fp
        return self.tp / found if found else None

    @property
    def recall(self) -> float | None:
        wanted = self.tp + self.fn
        return self.tp / wanted if wanted else None

    @property
    def f1(self) -> float | None:
        return f1_score(self.tp, self.fp, self.fn)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "data": self.data,
            "total": self.total,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "false_negatives": [_miss(m) for m in self.misses if m.expected],
            "false_positives": [_miss(m) for m in self.misses if not m.expected],
        }


def f1_score(tp: int, fp: int, fn: int) -> float | None:
    """F1 = 2TP / (2TP + FP + FN); None when there is nothing to find and nothing found."""
    denominator = 2 * tp + fp + fn
    return 2 * tp / denominator if denominator else None


def _miss(m: Miss) -> dict[str, Any]:
    return {
        "source": m.doc.source,
        "id": m.doc.ident,
        "title": m.doc.fields.get("title", ""),
        "text": m.doc.text()[:500],
        "note": m.doc.note,
        "explanation": m.explanation,
    }


def measure(ruleset: RuleSet, rule: str, docs: Sequence[LabelledDoc], data: str) -> Report:
    """Run `rule` (its query and, if it has one, its scorer) over `docs`."""
    report = Report(rule, data)
    for doc in docs:
        if doc.rule is not None and doc.rule != rule:
            continue
        matched = ruleset.match_rule(doc.fields, rule) is not None
        if matched and doc.label:
            report.tp += 1
        elif matched:
            report.fp += 1
        elif doc.label:
            report.fn += 1
        else:
            report.tn += 1
        if matched != doc.label:
            report.misses.append(Miss(doc, doc.label, ruleset.explain(doc.fields, rule)))
    return report
