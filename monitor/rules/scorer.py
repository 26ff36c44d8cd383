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

import base64
import binascii
import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, pairwise
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
    _index: dict[str, int] | None = None

    @property
    def index(self) -> dict[str, int]:
        """Term -> its column, built on first use (a `Bank` does not need it)."""
        if self._index is None:
            self._index = dict(zip(self.terms, range(len(self.terms)), strict=True))
        return self._index

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
            # One string and two base64 float32 arrays: parsed in a few ms, where lists of
            # thousands of JSON numbers took longer than everything else at start-up.
            "terms": "\n".join(self.terms),
            "idf": _pack(self.idf),
            "coef": _pack(self.coef),
        }


def _pack(values: np.ndarray[Any, Any]) -> str:
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode("ascii")


def _unpack(text: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
    if not isinstance(text, str):
        raise ValueError("weights must be base64 float32 arrays")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("weights are not valid base64") from None
    if len(raw) % 4:
        raise ValueError("weights are not float32 arrays")
    return np.frombuffer(raw, dtype="<f4").astype(np.float64)


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
    if not isinstance(data["terms"], str):
        raise ValueError("terms must be one newline-separated string")
    terms = data["terms"].split("\n") if data["terms"] else []
    idf, coef = _unpack(data["idf"]), _unpack(data["coef"])
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


@dataclass(slots=True)
class Scored:
    """A model's verdict on one article. The terms that weighed most are worked out when
    first asked for (an alert's explanation), not for every match."""

    score: float
    threshold: float
    model: Model
    terms: Mapping[str, int]
    combine: str = "query_or_model"
    query: bool = False
    _weights: list[tuple[str, float]] | None = None

    @property
    def weights(self) -> list[tuple[str, float]]:
        if self._weights is None:
            self._weights = self.model.weights(self.terms)
        return self._weights

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
        # Every (model, term) entry, then sorted by term so that a term's entries are
        # contiguous: offsets[j]:offsets[j + 1] are those of term j.
        vocab = dict.fromkeys(chain.from_iterable(m.terms for m in models))
        index = dict(zip(vocab, range(len(vocab)), strict=True))
        ids = [np.fromiter(map(index.__getitem__, m.terms), np.int64, len(m.terms)) for m in models]
        term_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        order = np.argsort(term_ids, kind="stable")
        self.index = index
        self._keys = index.keys()
        self.offsets = np.zeros(len(index) + 1, dtype=np.int64)
        np.cumsum(np.bincount(term_ids, minlength=len(index)), out=self.offsets[1:])
        owner = np.repeat(np.arange(len(models), dtype=np.int64), [len(m.terms) for m in models])
        idf = np.concatenate([m.idf for m in models]) if models else np.zeros(0)
        coef = np.concatenate([m.coef for m in models]) if models else np.zeros(0)
        self.model_of = owner[order]
        self.idf2 = (idf * idf)[order]
        self.weight = (idf * coef)[order]
        self.all_sublinear = bool(all(m.sublinear_tf for m in models))
        self.intercepts = np.array([m.intercept for m in models], dtype=np.float64)
        self.sublinear = np.array([m.sublinear_tf for m in models], dtype=bool)

    def scores(self, terms: Mapping[str, int]) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Each model's probability for the article's term counts."""
        n = len(self.models)
        # Set intersection and map() run in C: no Python loop over the article's terms.
        present = self._keys & terms.keys()
        if not present:
            return _sigmoid_array(self.intercepts)
        cols = np.fromiter(map(self.index.__getitem__, present), np.int64, len(present))
        counts = np.fromiter(map(terms.__getitem__, present), np.float64, len(present))
        starts = self.offsets[cols]
        lens = self.offsets[cols + 1] - starts
        total = int(lens.sum())
        shift = np.repeat(starts - (np.cumsum(lens) - lens), lens)
        sel = shift + np.arange(total)
        models = self.model_of[sel]
        if self.all_sublinear:  # TF of each term once, then spread to its entries
            tf = np.repeat(1.0 + np.log(counts), lens)
        else:
            raw = np.repeat(counts, lens)
            tf = np.where(self.sublinear[models], 1.0 + np.log(raw), raw)
        norm = np.sqrt(np.bincount(models, weights=tf * tf * self.idf2[sel], minlength=n))
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
