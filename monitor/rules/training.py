"""A rule's training data and scorer as its config states them: paths resolved next to the
rule's file, the labelled articles (its labels file and its examples) and their hash, which a
model must have been trained on to be used. No scikit-learn or numpy here: `monitor check` and
the daemon use this to find stale models."""

from __future__ import annotations

from pathlib import Path

from monitor.config import RuleConfig, Settings
from monitor.rules.compile import ScorerSpec
from monitor.rules.examples import example_fields
from monitor.rules.labels import LabelledDoc, LabelsError, data_hash, example_docs, read_labels


def rule_dir(settings: Settings, index: int) -> Path:
    """The folder of the file rule `index` is written in (the config's, or the current one)."""
    source = settings.source
    pos = source.positions.get(("rules", index)) or source.locate(("rules", index))
    if pos.file.startswith("<"):
        return Path.cwd()
    return Path(pos.file).resolve().parent


def examples_of(rule: RuleConfig) -> list[LabelledDoc]:
    cases = [("match", i, example_fields(e)) for i, e in enumerate(rule.examples.match)]
    cases += [("no_match", i, example_fields(e)) for i, e in enumerate(rule.examples.no_match)]
    return example_docs(rule.name, cases)


def training_docs(settings: Settings, index: int) -> list[LabelledDoc]:
    """The labels file of rule `index`'s scorer (its lines for this rule) and its examples.
    Raises `LabelsError`."""
    rule = settings.rules[index]
    docs: list[LabelledDoc] = []
    if rule.scorer is not None and rule.scorer.labels:
        path = rule_dir(settings, index) / rule.scorer.labels
        docs = [d for d in read_labels(path) if d.rule in (None, rule.name)]
    return docs + examples_of(rule)


def scorer_spec(settings: Settings, index: int) -> ScorerSpec | None:
    """Rule `index`'s scorer with its model path resolved and its training data hashed."""
    rule = settings.rules[index]
    if rule.scorer is None:
        return None
    model = rule_dir(settings, index) / rule.scorer.model
    try:
        digest: str | None = data_hash(training_docs(settings, index))
        error = None
    except LabelsError as exc:
        digest, error = None, f"the scorer's training data cannot be read: {exc}"
    return ScorerSpec(
        model=model,
        threshold=rule.scorer.threshold,
        combine=rule.scorer.combine,
        data_sha256=digest,
        data_error=error,
    )
