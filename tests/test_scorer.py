"""Trained scorers: `monitor train` on a fixture, the JSON artefact scored without
scikit-learn exactly as scikit-learn scores it, explanations that say a model decided, and
models refused by `monitor check` when missing, stale, corrupt or of another version."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from monitor.checks import compile_settings
from monitor.cli import main
from monitor.config import load_config
from monitor.errors import ConfigError
from monitor.rules.labels import read_labels
from monitor.rules.scorer import Bank, document_terms, load_model
from monitor.rules.train import Params, fit

DATA = Path(__file__).parent / "data" / "matching"

# A query that never matches: only the model can make this rule alert.
RULE = """
rules:
  - name: troops-model
    query: '"zzyzx never written"'
    scorer: {{model: models/troops.json, labels: labels/troops.jsonl, threshold: {threshold},
              combine: {combine}}}
    examples:
      no_match: ["Oil prices rose on Monday as traders watched the Gulf."]
"""

ON_TOPIC = (
    "Insurgents ambushed a US military convoy near Baghdad, killing two American soldiers "
    "and wounding four in a roadside bomb attack, the military said."
)
OFF_TOPIC = "Oil prices rose on Monday as traders watched the Gulf."


def setup_rule(
    tmp: Path, *, threshold: float = 0.5, combine: str = "query_or_model", extra: str = ""
) -> Path:
    rules = tmp / "rules"
    (rules / "labels").mkdir(parents=True, exist_ok=True)
    shutil.copy(DATA / "agnews_rows.csv", rules / "labels" / "agnews_rows.csv")
    shutil.copy(DATA / "troops_labels.jsonl", rules / "labels" / "troops.jsonl")
    (rules / "troops.yaml").write_text(RULE.format(threshold=threshold, combine=combine))
    cfg = tmp / "monitor.yaml"
    cfg.write_text(f"database: sqlite:///{tmp}/monitor.db\n{extra}include: [rules/*.yaml]\n")
    return cfg


def check_problems(cfg: Path) -> str:
    with pytest.raises(ConfigError) as exc:
        compile_settings(load_config(cfg))
    return "\n".join(exc.value.problems)


def test_train_writes_a_versioned_artefact_and_prints_cross_validated_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = setup_rule(tmp_path)
    assert "does not exist" in check_problems(cfg)  # not trained yet: a clear error
    assert main(["train", "--config", str(cfg), "--folds", "3", "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    assert "trained on 51 articles (16 on topic, 0 from feedback)" in out
    assert "cross-validated (3-fold x 2, threshold 0.5)" in out
    for name in ("model", "query", "query_or_model", "query_and_model"):
        assert f"    {name} " in out
    path = tmp_path / "rules" / "models" / "troops.json"
    art = json.loads(path.read_text())
    assert art["format"] == "news-monitor-scorer" and art["format_version"] == 1
    assert len(art["training"]["sha256"]) == 64 and art["training"]["articles"] == 51
    assert {"scikit-learn", "numpy", "monitor"} <= set(art["libraries"])
    assert art["features"] == {
        "fields": ["title", "summary", "body"],
        "ngrams": 2,
        "sublinear_tf": True,
        "fold_accents": True,
    }
    assert art["cross_validation"]["query"]["tp"] == 0  # the query never matches
    terms = art["terms"].split("\n")
    assert len(terms) > 100 and len(base64.b64decode(art["coef"])) == 4 * len(terms)
    assert len(base64.b64decode(art["idf"])) == 4 * len(terms)
    assert path.stat().st_size < 1_000_000
    compile_settings(load_config(cfg))  # current: `monitor check` is happy


def test_the_artefact_scores_as_scikit_learn_does_and_the_bank_as_each_model(
    tmp_path: Path,
) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    docs = read_labels(DATA / "troops_labels.jsonl")
    params = Params()
    model = fit("r", docs, params)
    path = tmp_path / "m.json"
    model.meta["training"] = {"sha256": "x"}
    path.write_text(json.dumps(model.to_json()))
    loaded = load_model(path, "r")

    terms = [list(document_terms(d.fields).elements()) for d in docs]
    vec = TfidfVectorizer(analyzer=lambda t: t, sublinear_tf=True, min_df=params.min_df)
    x = vec.fit_transform(terms)
    labels = [d.label for d in docs]
    clf = LogisticRegression(C=params.c, class_weight="balanced", solver="liblinear").fit(x, labels)
    articles = [{"body": ON_TOPIC}, {"title": OFF_TOPIC}, *[d.fields for d in docs[:10]]]
    expected = clf.predict_proba(
        vec.transform([list(document_terms(a).elements()) for a in articles])
    )[:, 1]
    mine = [loaded.score(document_terms(a)) for a in articles]
    assert np.allclose(mine, expected, atol=1e-5)

    other = fit("r2", docs[:30], Params(c=1.0))
    bank = Bank([loaded, other, loaded])
    for a in articles:
        t = document_terms(a)
        assert np.allclose(bank.scores(t), [loaded.score(t), other.score(t), loaded.score(t)])
    assert np.allclose(bank.scores({}), [loaded.score({}), other.score({}), loaded.score({})])


def test_a_model_match_says_so_with_score_threshold_and_terms(tmp_path: Path) -> None:
    cfg = setup_rule(tmp_path)
    assert main(["train", "--config", str(cfg), "--folds", "3", "--repeats", "1"]) == 0
    ruleset = compile_settings(load_config(cfg)).ruleset
    [match] = ruleset.match({"title": "", "summary": ON_TOPIC, "body": ""})
    assert match.rule == "troops-model" and match.hits == []
    assert match.scored is not None and match.scored.score >= 0.5
    top = [t for t, _ in match.scored.weights]
    assert len(top) == 8 and any(w > 0 for _, w in match.scored.weights)
    assert ruleset.match({"title": OFF_TOPIC}) == []
    text = ruleset.explain({"summary": ON_TOPIC}, "troops-model")
    assert text.startswith("rule 'troops-model': matched (query_or_model)")
    assert "query: did not match" in text
    assert "model troops.json: score" in text and ">= threshold 0.50" in text
    assert f"{top[0]!r}" in text

    # query_and_model: the model filters what the query found; here the query finds nothing.
    cfg = setup_rule(tmp_path, combine="query_and_model")
    ruleset = compile_settings(load_config(cfg)).ruleset
    assert ruleset.match({"summary": ON_TOPIC}) == []


def test_stale_corrupt_other_version_and_mismatched_models_fail_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = setup_rule(tmp_path)
    assert main(["train", "--config", str(cfg), "--folds", "3", "--repeats", "1"]) == 0
    assert main(["check", "--config", str(cfg)]) == 0
    capsys.readouterr()
    model = tmp_path / "rules" / "models" / "troops.json"
    good = model.read_text()

    labels = tmp_path / "rules" / "labels" / "troops.jsonl"
    labels.write_text(labels.read_text() + '{"title": "US base shelled", "label": 1}\n')
    assert main(["check", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    where = f"{tmp_path / 'rules' / 'troops.yaml'}:5:"
    assert where in err and "is stale" in err and "monitor train --rule troops-model" in err
    assert "Traceback" not in err
    shutil.copy(DATA / "troops_labels.jsonl", labels)
    assert main(["check", "--config", str(cfg)]) == 0  # the same data again: current

    cases = {
        "{not json": "is corrupt (not JSON",
        good.replace('"format_version":1', '"format_version":7'): "of another version",
        good.replace('"features_version":1', '"features_version":0'): "of another version",
        good.replace('"rule":"troops-model"', '"rule":"other"'): "trained for rule 'other'",
        good.replace('"intercept":', '"intercept":"x","i":'): "is corrupt",
        json.dumps({**json.loads(good), "coef": "AACAPw=="}): "is corrupt (terms, idf and coef",
        json.dumps({**json.loads(good), "idf": [1.0]}): "is corrupt (weights must be base64",
        json.dumps({**json.loads(good), "idf": "!!"}): "is corrupt (weights are not valid",
        '{"format": "something else"}': "not a news-monitor model file",
    }
    for text, message in cases.items():
        model.write_text(text)
        assert message in check_problems(cfg), message
    model.write_text(good)
    other = setup_rule(tmp_path, extra="fold_accents: false\n")
    assert "trained with fold_accents True" in check_problems(other)
    model.unlink()
    assert "does not exist: run `monitor train" in check_problems(cfg)
    labels.write_text('{"title": "x", "label": 1}\n{"oops"\n')
    problems = check_problems(cfg)
    assert "training data cannot be read" in problems and f"{labels}:2:" in problems


def test_a_model_keeps_its_weightiest_terms_and_still_scores_as_scikit_learn() -> None:
    from monitor.rules.train import _fit, term_lists

    docs = read_labels(DATA / "troops_labels.jsonl")
    params = Params(max_terms=60)
    model = fit("r", docs, params)
    assert len(model.terms) == 60
    vec, clf = _fit(term_lists(docs, 2), [d.label for d in docs], params)
    assert sorted(vec.vocabulary_) == sorted(model.terms)
    articles = [{"body": ON_TOPIC}, {"title": OFF_TOPIC}, *[d.fields for d in docs[:10]]]
    lists = [list(document_terms(a).elements()) for a in articles]
    expected = clf.predict_proba(vec.transform(lists))[:, 1]
    mine = [model.score(document_terms(a)) for a in articles]
    assert np.allclose(mine, expected, atol=1e-9)
    assert np.allclose(Bank([model]).scores(document_terms(articles[0]))[0], mine[0])
