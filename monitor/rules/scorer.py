"""Learned scoring for a rule: a TF-IDF + logistic regression model, loaded from the JSON
artefact `monitor train` writes, and scored with numpy alone (scikit-learn is needed only to
train).

Owns the artefact format (`FORMAT`, `FORMAT_VERSION`), the features (`FEATURES_VERSION`: the
shared tokeniser's tokens of title, summary and body, plus bigrams within a field, sublinear
TF, smoothed IDF, L2 norm: what scikit-learn's `TfidfVectorizer` computes from the same
terms), the checks that refuse a missing, corrupt, other-version or stale model, and `Bank`,
which scores every model of a rule set on an article in a few vectorised numpy calls.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from monitor.rules.text import fold_accents_enabled, tokenize

FORMAT = "news-monitor-scorer"
#: The layout of the JSON artefact.
FORMAT_VERSION = 1
#: What the features are (tokeniser, n-grams, weighting); a model of another version is
#: refused, since its terms would not be the ones it was trained on.
FEATURES_VERSION = 1
FIELDS = ("title", "summary", "body")


class ScorerLoadError(Exception):
    """A model cannot be used: missing, corrupt, of another version, or stale."""


def terms_of(tokens: Sequence[Sequence[str]], ngrams: int = 2) -> Counter[str]:
    """Term counts of a document given the tokens of each field: words and, for
    `ngrams` = 2, pairs of neighbours within a field ("us soldier")."""
    counts: Counter[str] = Counter()
    for norms in tokens:
        counts.update(norms)
        if ngrams >= 2 and len(norms) > 1:
            counts.update(map(" ".join, pairwise(norms)))
    return counts


def document_terms(fields: Mapping[str, str], ngrams: int = 2) -> Counter[str]:
    """`terms_of` an article's text fields, tokenised by the shared normaliser."""
    return terms_of([tokenize(fields.get(f) or "").norms for f in FIELDS], ngrams)


@dataclass(slots=True)
class Model:
    """A loaded model: term -> (idf, coefficient), the intercept, and what it was made from."""

    rule: str
    terms: list[str]
    idf: np.ndarray[Any, np.dtype[np.float64]]
    coef: np.ndarray[Any, np.dtype[np.float64]]
    intercept: float
    ngrams: int
    sublinear_tf: bool
    meta: dict[str, Any] = field(default_factory=dict)
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {t: i for i, t in enumerate(self.terms)}

    @property
    def training_sha256(self) -> str:
        return str(self.meta.get("training", {}).get("sha256", ""))

    def _vector(self, terms: Mapping[str, int]) -> tuple[list[int], np.ndarray[Any, Any]]:
        cols = [self.index[t] for t in terms if t in self.index]
        counts = np.array([terms[self.terms[c]] for c in cols], dtype=np.float64)
        tf = 1.0 + np.log(counts) if self.sublinear_tf else counts
        return cols, tf * self.idf[cols]

    def score(self, terms: Mapping[str, int]) -> float:
        """The probability (0-1) that the article is on topic."""
        cols, x = self._vector(terms)
        norm = float(np.sqrt(np.dot(x, x)))
        z = self.intercept + (float(np.dot(x, self.coef[cols])) / norm if norm else 0.0)
        return _sigmoid(z)

    def weights(self, terms: Mapping[str, int], top: int = 8) -> list[tuple[str, float]]:
        """The terms of the article that weighed most, with their contribution to the logit."""
        cols, x = self._vector(terms)
        norm = float(np.sqrt(np.dot(x, x)))
        if not norm:
            return []
        contrib = x * self.coef[cols] / norm
        order = np.argsort(-np.abs(contrib))[:top]
        return [(self.terms[cols[i]], round(float(contrib[i]), 3)) for i in order]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "features_version": FEATURES_VERSION,
            "rule": self.rule,
            "features": {
                "fields": list(FIELDS),
                "ngrams": self.ngrams,
                "sublinear_tf": self.sublinear_tf,
                "fold_accents": self.meta.get("fold_accents", fold_accents_enabled()),
            },
            **{k: v for k, v in self.meta.items() if k not in ("fold_accents",)},
            "intercept": self.intercept,
            "terms": self.terms,
            "idf": [round(float(v), 6) for v in self.idf],
            "coef": [round(float(v), 6) for v in self.coef],
        }


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ScorerLoadError(message)


def load_model(path: Path, rule: str, *, data_sha256: str | None = None) -> Model:
    """Load and check a model file. `ScorerLoadError` says what is wrong and what to do."""
    retrain = f"run `monitor train --rule {rule}`"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ScorerLoadError(f"model file {path} does not exist: {retrain}") from None
    except OSError as exc:
        raise ScorerLoadError(f"model file {path} cannot be read: {exc}") from None
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ScorerLoadError(
            f"model file {path} is corrupt (not JSON: {exc}): {retrain}"
        ) from None
    _require(
        isinstance(data, dict) and data.get("format") == FORMAT,
        f"{path} is not a news-monitor model file",
    )
    for key, mine in (("format_version", FORMAT_VERSION), ("features_version", FEATURES_VERSION)):
        _require(
            data.get(key) == mine,
            f"model file {path} is of another version ({key} {data.get(key)!r}, this "
            f"monitor reads {mine}): {retrain}",
        )
    _require(
        data.get("rule") == rule,
        f"model file {path} was trained for rule {data.get('rule')!r}, not {rule!r}",
    )
    try:
        model = _parse(data, rule)
    except (KeyError, TypeError, ValueError) as exc:
        raise ScorerLoadError(f"model file {path} is corrupt ({exc}): {retrain}") from None
    folded = data["features"].get("fold_accents")
    _require(
        folded == fold_accents_enabled(),
        f"model file {path} was trained with fold_accents {folded}, the config says "
        f"{fold_accents_enabled()}: {retrain}",
    )
    if data_sha256 is not None:
        _require(
            model.training_sha256 == data_sha256,
            f"model file {path} is stale: its training data changed since it was trained "
            f"(labels or examples): {retrain}",
        )
    return model


def _parse(data: dict[str, Any], rule: str) -> Model:
    terms = data["terms"]
    idf = np.asarray(data["idf"], dtype=np.float64)
    coef = np.asarray(data["coef"], dtype=np.float64)
    if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
        raise ValueError("terms must be a list of strings")
    if idf.ndim != 1 or coef.ndim != 1 or not len(terms) == len(idf) == len(coef):
        raise ValueError("terms, idf and coef must have the same length")
    if not (np.isfinite(idf).all() and np.isfinite(coef).all()):
        raise ValueError("non-finite weights")
    features = data["features"]
    meta = {k: v for k, v in data.items() if k not in ("terms", "idf", "coef", "intercept")}
    meta["fold_accents"] = features.get("fold_accents")
    return Model(
        rule=rule,
        terms=terms,
        idf=idf,
        coef=coef,
        intercept=float(data["intercept"]),
        ngrams=int(features["ngrams"]),
        sublinear_tf=bool(features["sublinear_tf"]),
        meta=meta,
    )


@dataclass(frozen=True, slots=True)
class Scored:
    """A model's verdict on one article."""

    score: float
    threshold: float
    weights: list[tuple[str, float]]
    combine: str = "query_or_model"
    query: bool = False

    @property
    def passed(self) -> bool:
        return self.score >= self.threshold

    def describe(self, path: str = "") -> str:
        verdict = ">=" if self.passed else "<"
        terms = ", ".join(f"{t!r} {w:+.2f}" for t, w in self.weights)
        where = f" {path}" if path else ""
        return (
            f"model{where}: score {self.score:.3f} {verdict} threshold {self.threshold:.2f}; "
            f"terms that weighed most: {terms or 'none'}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 4),
            "threshold": self.threshold,
            "combine": self.combine,
            "query_matched": self.query,
            "terms": [[t, w] for t, w in self.weights],
        }


class Bank:
    """Every model of a rule set, scored on an article at once.

    The models' terms are merged into one vocabulary; for each term, the (model, idf,
    idf x coefficient) entries are stored contiguously. An article's terms select their
    entries with one gather, and `np.bincount` sums the dot products and squared norms per
    model, so 100 models cost about as much as one.
    """

    def __init__(self, models: Sequence[Model]) -> None:
        self.models = list(models)
        self.ngrams = max((m.ngrams for m in models), default=1)
        entries: dict[str, list[tuple[int, float, float]]] = {}
        for k, m in enumerate(models):
            for t, i in m.index.items():
                entries.setdefault(t, []).append((k, float(m.idf[i]), float(m.idf[i] * m.coef[i])))
        self.index = {t: j for j, t in enumerate(entries)}
        lens = [len(v) for v in entries.values()]
        self.offsets = np.zeros(len(lens) + 1, dtype=np.int64)
        np.cumsum(lens, out=self.offsets[1:])
        flat = [e for v in entries.values() for e in v]
        self.model_of = np.array([e[0] for e in flat], dtype=np.int64)
        self.idf = np.array([e[1] for e in flat], dtype=np.float64)
        self.weight = np.array([e[2] for e in flat], dtype=np.float64)
        self.intercepts = np.array([m.intercept for m in models], dtype=np.float64)
        self.sublinear = np.array([m.sublinear_tf for m in models], dtype=bool)

    def scores(self, terms: Mapping[str, int]) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Each model's probability for the article's term counts."""
        n = len(self.models)
        index = self.index
        pairs = [(index[t], c) for t, c in terms.items() if t in index]
        if not pairs:
            return _sigmoid_array(self.intercepts)
        cols = np.fromiter((p[0] for p in pairs), dtype=np.int64, count=len(pairs))
        counts = np.fromiter((p[1] for p in pairs), dtype=np.float64, count=len(pairs))
        starts = self.offsets[cols]
        lens = self.offsets[cols + 1] - starts
        total = int(lens.sum())
        shift = np.repeat(starts - (np.cumsum(lens) - lens), lens)
        sel = shift + np.arange(total)
        models = self.model_of[sel]
        raw = np.repeat(counts, lens)
        tf = np.where(self.sublinear[models], 1.0 + np.log(raw), raw)
        x = tf * self.idf[sel]
        norm = np.sqrt(np.bincount(models, weights=x * x, minlength=n))
        dot = np.bincount(models, weights=tf * self.weight[sel], minlength=n)
        z = self.intercepts + np.divide(dot, norm, out=np.zeros(n), where=norm > 0)
        return _sigmoid_array(z)


def _sigmoid_array(z: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -500, 500))), dtype=np.float64)


#: How a rule's query and its model's verdict combine into "alert".
COMBINE: dict[str, Callable[[bool, bool], bool]] = {
    "query": lambda query, model: query,
    "query_or_model": lambda query, model: query or model,
    "query_and_model": lambda query, model: query and model,
}
