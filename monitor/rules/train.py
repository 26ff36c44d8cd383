"""Training a rule's scorer (scikit-learn, needed only here: `pip install '.[train]'`).

Owns the learning recipe: the scorer's terms (`scorer.document_terms`) weighted by
scikit-learn's `TfidfVectorizer` (sublinear TF, smoothed IDF, L2 norm, terms in at least
`min_df` articles) and a class-balanced `LogisticRegression`; stratified k-fold
cross-validation of the model alone and of each way of combining it with the query; and the
artefact: vocabulary, IDF, coefficients and intercept in JSON, with the hash of the training
data, the library versions and the feature parameters (never a pickle: loading it runs no
code and needs no scikit-learn).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitor import __version__
from monitor.rules.labels import LabelledDoc
from monitor.rules.measure import f1_score
from monitor.rules.scorer import COMBINE, FIELDS, Model, document_terms
from monitor.rules.text import fold_accents_enabled


@dataclass(frozen=True, slots=True)
class Params:
    ngrams: int = 2
    min_df: int = 2
    c: float = 4.0
    #: Terms kept: the most weighty of a first fit, then refitted on those alone (a model
    #: scored on every article costs in proportion to its terms).
    max_terms: int = 3000
    folds: int = 5
    repeats: int = 3
    seed: int = 0


@dataclass(slots=True)
class Figures:
    """Pooled cross-validated counts for one way of deciding."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        return f1_score(self.tp, self.fp, self.fn)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


@dataclass(slots=True)
class CrossValidation:
    folds: int
    repeats: int
    threshold: float
    figures: dict[str, Figures] = field(default_factory=dict)  # decider -> pooled counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "folds": self.folds,
            "repeats": self.repeats,
            "threshold": self.threshold,
            **{name: f.to_dict() for name, f in self.figures.items()},
        }


def _vectorizer(params: Params) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(
        analyzer=_identity, sublinear_tf=True, smooth_idf=True, norm="l2", min_df=params.min_df
    )


def _identity(terms: list[str]) -> list[str]:
    return terms


def _classifier(params: Params) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(
        C=params.c, class_weight="balanced", solver="liblinear", max_iter=1000
    )


def _fit(terms: Sequence[list[str]], labels: Any, params: Params) -> tuple[Any, Any]:
    """A fitted (vectorizer, classifier), keeping the `max_terms` weightiest terms."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = _vectorizer(params)
    clf = _classifier(params).fit(vec.fit_transform(terms), labels)
    if len(vec.vocabulary_) <= params.max_terms:
        return vec, clf
    names = vec.get_feature_names_out()
    keep = sorted(names[np.argsort(-np.abs(clf.coef_[0]))[: params.max_terms]])
    vec = TfidfVectorizer(
        analyzer=_identity, sublinear_tf=True, smooth_idf=True, norm="l2", vocabulary=keep
    )
    clf = _classifier(params).fit(vec.fit_transform(terms), labels)
    return vec, clf


def term_lists(docs: Sequence[LabelledDoc], ngrams: int) -> list[list[str]]:
    return [list(document_terms(d.fields, ngrams).elements()) for d in docs]


def cross_validate(
    docs: Sequence[LabelledDoc],
    query: Sequence[bool],
    threshold: float,
    params: Params = Params(),
) -> CrossValidation:
    """Stratified k-fold CV (repeated) of the model and of each combination with the query:
    every article is scored by a model that did not see it; counts are pooled."""
    from sklearn.model_selection import RepeatedStratifiedKFold

    labels = np.array([d.label for d in docs], dtype=bool)
    queried = np.array(query, dtype=bool)
    terms = term_lists(docs, params.ngrams)
    positives = int(labels.sum())
    folds = max(2, min(params.folds, positives, len(docs) - positives))
    splitter = RepeatedStratifiedKFold(
        n_splits=folds, n_repeats=params.repeats, random_state=params.seed
    )
    cv = CrossValidation(folds, params.repeats, threshold)
    deciders = {"model": lambda q, m: m, **COMBINE}
    for name in deciders:
        cv.figures[name] = Figures()
    for train, test in splitter.split(np.zeros(len(docs)), labels):
        vec, clf = _fit([terms[i] for i in train], labels[train], params)
        probs = clf.predict_proba(vec.transform([terms[i] for i in test]))[:, 1]
        for name, decide in deciders.items():
            fig = cv.figures[name]
            for i, p in zip(test, probs, strict=True):
                said = decide(bool(queried[i]), bool(p >= threshold))
                fig.tp += int(said and labels[i])
                fig.fp += int(said and not labels[i])
                fig.fn += int(not said and labels[i])
    return cv


def fit(rule: str, docs: Sequence[LabelledDoc], params: Params = Params()) -> Model:
    """The model trained on every article of `docs`."""
    labels = np.array([d.label for d in docs], dtype=bool)
    vec, clf = _fit(term_lists(docs, params.ngrams), labels, params)
    vocab = vec.vocabulary_
    terms = sorted(vocab, key=vocab.__getitem__)
    return Model(
        rule=rule,
        terms=terms,
        idf=np.asarray(vec.idf_, dtype=np.float64),
        coef=np.asarray(clf.coef_[0], dtype=np.float64),
        intercept=float(clf.intercept_[0]),
        ngrams=params.ngrams,
        sublinear_tf=True,
        meta={"fold_accents": fold_accents_enabled()},
    )


def artefact_meta(
    docs: Sequence[LabelledDoc],
    data_sha256: str,
    params: Params,
    cv: CrossValidation | None,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """What the artefact records besides its weights."""
    import scipy
    import sklearn

    return {
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "training": {
            "sha256": data_sha256,
            "articles": len(docs),
            "positives": sum(d.label for d in docs),
            **extra,
        },
        "learner": {
            "features": "TfidfVectorizer(sublinear_tf, smooth_idf, l2, min_df="
            f"{params.min_df}) over the shared tokeniser's words and bigrams of "
            + ", ".join(FIELDS)
            + f"; the {params.max_terms} weightiest terms of a first fit kept and refitted",
            "classifier": f"LogisticRegression(C={params.c}, class_weight=balanced, liblinear)",
        },
        "libraries": {
            "monitor": __version__,
            "python": platform.python_version(),
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
        },
        "cross_validation": cv.to_dict() if cv is not None else None,
    }
