"""`monitor train --config FILE [--rule NAME]`: fit each rule's scorer on its labelled data,
print the cross-validated figures, and write the model where the rule's `scorer.model` says
(next to the rule's file). Needs scikit-learn (`pip install '.[train]'`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from monitor.config import load_config
    from monitor.rules.labels import LabelsError
    from monitor.rules.text import set_fold_accents

    out = out or sys.stdout
    settings = load_config(args.config)
    set_fold_accents(settings.fold_accents)
    wanted = set(args.rule or [])
    chosen = [
        i
        for i, r in enumerate(settings.rules)
        if r.enabled and r.scorer is not None and (not wanted or r.name in wanted)
    ]
    missing = wanted - {settings.rules[i].name for i in chosen}
    if missing or not chosen:
        what = ", ".join(sorted(missing)) if missing else "any rule"
        print(f"error: no enabled rule with a scorer: section matches {what}", file=sys.stderr)
        return 1
    try:
        import sklearn  # noqa: F401
    except ImportError:
        print("error: training needs scikit-learn: pip install '.[train]'", file=sys.stderr)
        return 1
    status = 0
    for i in chosen:
        try:
            status |= _train_one(settings, i, args, out)
        except LabelsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
    return status


def _train_one(settings: Any, index: int, args: argparse.Namespace, out: TextIO) -> int:
    from monitor.cli.evaluate import feedback_docs
    from monitor.rules import RuleSpec, compile_rules
    from monitor.rules.labels import data_hash
    from monitor.rules.train import Params, artefact_meta, cross_validate, fit
    from monitor.rules.training import rule_dir, training_docs

    rule = settings.rules[index]
    scorer = rule.scorer
    base = training_docs(settings, index)
    extra = [] if args.no_feedback else feedback_docs(settings, [rule.name])
    docs = base + extra
    positives = sum(d.label for d in docs)
    if positives < 2 or len(docs) - positives < 2:
        print(
            f"error: rule {rule.name!r}: {len(docs)} labelled articles, {positives} on topic: "
            "a model needs at least 2 of each",
            file=sys.stderr,
        )
        return 1
    # The query alone, without the model being trained, decides the "query" side of the CV.
    ruleset = compile_rules(
        [RuleSpec(rule.name, rule.query)], settings.entities, fold_accents=settings.fold_accents
    )
    query = [ruleset.match_rule(d.fields, rule.name) is not None for d in docs]
    params = Params(folds=args.folds, repeats=args.repeats)
    cv = cross_validate(docs, query, scorer.threshold, params)
    model = fit(rule.name, docs, params)
    model.meta.update(
        artefact_meta(docs, data_hash(base), params, cv, {"feedback_verdicts": len(extra)})
    )
    path = rule_dir(settings, index) / scorer.model
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(model.to_json(), ensure_ascii=False, separators=(",", ":")))
    tmp.replace(path)
    if args.format == "json":
        print(json.dumps({"rule": rule.name, "model": str(path), **cv.to_dict()}), file=out)
        return 0
    print(
        f"rule {rule.name!r}: trained on {len(docs)} articles ({positives} on topic, "
        f"{len(extra)} from feedback); {len(model.terms)} terms; wrote {path} "
        f"({path.stat().st_size:,} bytes)",
        file=out,
    )
    print(
        f"  cross-validated ({cv.folds}-fold x {cv.repeats}, threshold {cv.threshold}):",
        file=out,
    )
    for name, fig in cv.figures.items():
        mark = "  <- configured" if name == scorer.combine else ""
        print(
            f"    {name:16} precision {_f(fig.precision)}  recall {_f(fig.recall)}  "
            f"F1 {_f(fig.f1)}  (tp {fig.tp} fp {fig.fp} fn {fig.fn}){mark}",
            file=out,
        )
    return 0


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
