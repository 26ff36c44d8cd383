"""Compiling rules into a `RuleSet`, and matching articles against it.

Owns the translation of syntax trees into evaluation nodes (scopes pushed down to the leaves,
entities expanded, regexes compiled), the collection of every error of every rule, and the
prefilter. What each rule needs an article to contain (tokens and prefixes, per field) is
expanded into conjunctions, one of which must hold; each conjunction is indexed under its rarest
atom, judged by document frequency in real news (`frequency.py`). An article's distinct tokens
are intersected with the keys (prefixes through one Aho-Corasick automaton), and only the
conjunctions of the atoms found are checked, each with one set comparison. So the cost of
matching grows with the tokens of an article, not with the number of rules, and a rule is
evaluated exactly when every token its query needs is present: the prefilter never drops a
rule that could match.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import ahocorasick
import regex

from monitor.rules.budget import ArticleBudget
from monitor.rules.entities import Gazetteer, compile_entities
from monitor.rules.evaluate import (
    AndNode,
    Doc,
    EntityLeaf,
    EvalNode,
    NearNode,
    NotNode,
    OrNode,
    PhraseLeaf,
    RegexLeaf,
    Span,
    hit_span,
)
from monitor.rules.frequency import default_frequency
from monitor.rules.query import (
    TEXT_SCOPE,
    And,
    EntityRef,
    Near,
    Node,
    Not,
    Or,
    Phrase,
    Regex,
    RuleCompileError,
    RuleError,
    Scope,
    Word,
    parse,
)
from monitor.rules.result import Hit, Match
from monitor.rules.text import set_fold_accents

if TYPE_CHECKING:  # numpy is imported only by a rule set that has a model
    from monitor.rules.scorer import Bank, Model

#: Every field an article offers to rules (as `Article.fields()`), with its prefilter bit.
FIELD_BITS = {
    name: 1 << i
    for i, name in enumerate(("title", "summary", "body", "author", "tags", "url", "feed"))
}

#: Prefilter key -> the atoms it makes true in one field.
Atoms = dict[str, tuple[int, ...]]

#: What an article must contain for a rule to possibly match, exactly as its query says up to
#: NOT, regexes and distances: ("key", key, mask), ("all", parts) or ("any", parts); None
#: when nothing is required.
Need = tuple[Any, ...] | None

_REGEX_FLAGS = {"i": regex.IGNORECASE, "m": regex.MULTILINE, "s": regex.DOTALL, "x": regex.VERBOSE}


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A rule to compile: its name, its query, and its trained scorer if it has one."""

    name: str
    query: str
    scorer: ScorerSpec | None = None


Combine = Literal["query", "query_or_model", "query_and_model"]


@dataclass(frozen=True, slots=True)
class ScorerSpec:
    """A rule's scorer as configured: the model file, its threshold, how it combines with the
    query, and the hash of the training data the config names now (None: not checked)."""

    model: Path
    threshold: float = 0.5
    combine: Combine = "query_or_model"
    data_sha256: str | None = None
    data_error: str | None = None  # the training data named in the config cannot be read


class ScorerError(RuleError):
    """A rule's model cannot be used (missing, corrupt, other version, stale)."""


@dataclass(frozen=True, slots=True)
class CompiledRule:
    name: str
    query: str
    root: EvalNode


class RuleSet:
    """Compiled rules plus their prefilter. Safe to share between threads (read-only)."""

    def __init__(
        self,
        rules: list[CompiledRule],
        needs: list[Need],
        scorers: Mapping[int, tuple[ScorerSpec, Model]] | None = None,
        *,
        fold_accents: bool = True,
    ) -> None:
        self._rules = rules
        self._by_name = {r.name: r for r in rules}
        self._index = {r.name: i for i, r in enumerate(rules)}
        self.fold_accents = fold_accents
        # Rules with a model: rule index -> (its spec, its model, its place in the bank).
        self._scorers = {
            i: (spec, model, k)
            for k, (i, (spec, model)) in enumerate(sorted((scorers or {}).items()))
        }
        self._bank = _scorer_bank(self._scorers)
        # Rules a model alone can make match: scored on every article.
        self._model_driven = [
            i for i, (spec, _, _) in self._scorers.items() if spec.combine == "query_or_model"
        ]
        self._driven_rows: Any = None
        self._driven_thresholds: Any = None
        self._always = [i for i, n in enumerate(needs) if n is None]
        prefilter = _Prefilter()
        for i, need in enumerate(needs):
            if need is not None:
                prefilter.add_rule(i, need)
        key_atoms = prefilter.key_atoms()
        self._stages = prefilter.stages()
        self._by_field = _field_atoms(key_atoms)
        self._prefixes = _prefix_automaton(key_atoms)

    @property
    def rule_names(self) -> list[str]:
        return [r.name for r in self._rules]

    def query_of(self, rule: str) -> str:
        return self._by_name[rule].query

    def _true_atoms(self, doc: Doc) -> set[int]:
        """The base atoms of the prefilter that hold in the article."""
        true: set[int] = set()
        # Set operations and map() over the distinct words of each field, so that the
        # per-word work runs in C. (A memo of word -> atoms was tried: it paid off only when
        # the same article was matched again; on new articles its look-ups miss the CPU
        # caches as much as these do.)
        for name, exact, exact_keys, prefix in self._by_field:
            if not doc.fields.get(name):
                continue
            vocab = doc.tokens(name).words
            true.update(*map(exact.__getitem__, vocab & exact_keys))
            if self._prefixes is not None and prefix:
                found = map(itemgetter(1), self._prefixes.iter(" " + " ".join(vocab)))
                true.update(*map(prefix.get, found, repeat(())))
        return true

    def candidates(self, doc: Doc) -> list[int]:
        """Indexes of the rules whose required tokens occur in the article, in rule order."""
        out: set[int] = set(self._always)
        if not self._stages:
            return sorted(out)
        true = self._true_atoms(doc)
        true.add(_TRUE)
        # Each conjunction is reached through its rarest atom, then its second rarest (shared
        # by a group), then the rest with one set comparison in C: the Python work is per
        # group reached, and rarely more than a few hundred are. A stage's conjunctions only
        # use atoms known by then.
        for stage, indexed in self._stages:
            reached = [
                t
                for a in true & indexed
                for second, postings in stage[a]
                if second in true
                for rest, t in postings
                if rest <= true
            ]
            out.update(~t for t in reached if t < 0)
            true.update(t for t in reached if t >= 0)
        return sorted(out)

    def match(
        self, fields: Mapping[str, str], *, budget: float | ArticleBudget | None = None
    ) -> list[Match]:
        """Every rule that matches the article, in rule order, with its hits (and, for a
        rule with a model, the model's score).

        `budget` is the total regex time the article may cost, in seconds (or an
        `ArticleBudget` to read afterwards): once spent, the regexes still to run count as not
        matched, and the rule that ran it out is counted in `RuleBudgetStats`. Regexes
        release the GIL while they run, so calling this in a thread never stalls the loop.
        """
        doc = Doc(fields, _budget(budget))
        out: list[Match] = []
        found: dict[int, list[Span]] = {}
        for i in self.candidates(doc):
            rule = self._rules[i]
            doc.budget.rule = rule.name
            spans = rule.root.ev(doc)
            if spans is not None:
                if not self._scorers:
                    out.append(Match(rule.name, _hits(doc, spans)))
                found[i] = spans
        if not self._scorers:
            return out
        return self._with_models(doc, found)

    def _with_models(self, doc: Doc, found: dict[int, list[Span]]) -> list[Match]:
        assert self._bank is not None
        probs = None
        if self._model_driven or any(i in found for i in self._scorers):
            probs = self._bank.scores(doc.terms(self._bank.ngrams))
        # Only the rules a model passed can match without their query (one vector compare).
        passed = set() if probs is None else set(self._driven_at(probs))
        out: list[Match] = []
        for i in sorted(found.keys() | passed):
            entry = self._scorers.get(i)
            spans = found.get(i)
            if entry is None or probs is None:
                if spans is not None:
                    out.append(Match(self._rules[i].name, _hits(doc, spans)))
                continue
            match = self._decide(doc, i, spans, float(probs[entry[2]]))
            if match is not None:
                out.append(match)
        return out

    def _driven_at(self, probs: Any) -> list[int]:
        """The `query_or_model` rules whose model's score reaches their threshold."""
        if self._driven_thresholds is None:
            import numpy as np

            rows = [self._scorers[i][2] for i in self._model_driven]
            self._driven_rows = np.array(rows, dtype=np.int64)
            self._driven_thresholds = np.array(
                [self._scorers[i][0].threshold for i in self._model_driven]
            )
        hits = (probs[self._driven_rows] >= self._driven_thresholds).nonzero()[0]
        return [self._model_driven[k] for k in hits]

    def _decide(self, doc: Doc, i: int, spans: list[Span] | None, prob: float) -> Match | None:
        from monitor.rules.scorer import COMBINE, Scored

        spec, model, _ = self._scorers[i]
        if not COMBINE[spec.combine](spans is not None, prob >= spec.threshold):
            return None
        terms = doc.terms(model.ngrams)
        verdict = Scored(prob, spec.threshold, model, terms, spec.combine, spans is not None)
        return Match(self._rules[i].name, _hits(doc, spans or []), verdict)

    def match_rule(self, fields: Mapping[str, str], rule: str) -> Match | None:
        """One rule against the article, without the prefilter. KeyError if not in the set."""
        compiled = self._by_name[rule]
        doc = Doc(fields)
        spans = compiled.root.ev(doc)
        i = self._index[rule]
        if i not in self._scorers:
            return None if spans is None else Match(rule, _hits(doc, spans))
        model = self._scorers[i][1]
        return self._decide(doc, i, spans, model.score(doc.terms(model.ngrams)))

    def scorer_of(self, rule: str) -> tuple[ScorerSpec, Model] | None:
        entry = self._scorers.get(self._index[rule])
        return None if entry is None else (entry[0], entry[1])

    def explain(
        self, fields: Mapping[str, str], rule: str, *, budget: float | ArticleBudget | None = None
    ) -> str:
        """Why `rule` matched the article or why not: each node of its query, hit or missed
        (a regex that ran out of time, its own or the article's `budget`, says so), then its
        model's score and how the two combined."""
        from monitor.rules.explain import explain_rule
        from monitor.rules.scorer import COMBINE, Scored

        compiled = self._by_name[rule]
        doc = Doc(fields, _budget(budget))
        text = explain_rule(compiled.name, compiled.root, doc)
        entry = self._scorers.get(self._index[rule])
        if entry is None:
            return text
        spec, model, _ = entry
        terms = doc.terms(model.ngrams)
        query = compiled.root.ev(doc) is not None
        prob = model.score(terms)
        verdict = Scored(prob, spec.threshold, model, terms, spec.combine, query)
        decided = COMBINE[spec.combine](query, verdict.passed)
        head, _, rest = text.partition("\n")
        head = f"rule {rule!r}: {'matched' if decided else 'did not match'} ({spec.combine})"
        query_line = f"  query: {'matched' if query else 'did not match'}"
        return "\n".join([head, query_line, rest, "  " + verdict.describe(spec.model.name)])


def _scorer_bank(scorers: Mapping[int, tuple[ScorerSpec, Model, int]]) -> Bank | None:
    """The models of the rules that have one, as one bank scored together (None: no model)."""
    if not scorers:
        return None
    from monitor.rules.scorer import Bank

    return Bank([model for _, model, _ in scorers.values()])


def _field_atoms(
    key_atoms: Mapping[str, tuple[tuple[int, int], ...]],
) -> list[tuple[str, Atoms, frozenset[str], Atoms]]:
    """Per field: key -> the atoms it makes true there, exact keys and prefixes apart. A
    field no rule looks for a token in is not tokenised for the prefilter at all."""
    by_field: list[tuple[str, Atoms, frozenset[str], Atoms]] = []
    for name, bit in FIELD_BITS.items():
        atoms = {
            key: tuple(atom for mask, atom in pairs if mask & bit)
            for key, pairs in key_atoms.items()
        }
        atoms = {key: found for key, found in atoms.items() if found}
        if atoms:
            exact = {k: v for k, v in atoms.items() if not k.endswith("*")}
            prefix = {k: v for k, v in atoms.items() if k.endswith("*")}
            # The keys as a set too: intersecting a set with a dict iterates the dict.
            by_field.append((name, exact, frozenset(exact), prefix))
    return by_field


def _prefix_automaton(
    key_atoms: Mapping[str, tuple[tuple[int, int], ...]],
) -> ahocorasick.Automaton | None:
    """The prefix keys ("word*") as one automaton, None when no rule has one."""
    prefixes = [k for k in key_atoms if k.endswith("*")]
    if not prefixes:
        return None
    # Matched against " tok1 tok2 ...": the leading space anchors a key at a token start.
    automaton = ahocorasick.Automaton()
    for key in prefixes:
        automaton.add_word(" " + key[:-1], key)
    automaton.make_automaton()
    return automaton


def _budget(budget: float | ArticleBudget | None) -> ArticleBudget | None:
    if budget is None or isinstance(budget, ArticleBudget):
        return budget
    return ArticleBudget(budget)


def _hits(doc: Doc, spans: Iterable[Span]) -> list[Hit]:
    # NEAR repeats a hit in every pair it is part of: drop the copies (tuples, in C) before
    # converting each to characters.
    raw = {hit for span in spans for hit in span[3]}
    seen = {hit_span(doc, hit) for hit in raw}
    return [Hit(*h) for h in sorted(seen)]


def compile_rules(
    specs: Sequence[RuleSpec],
    entities: Mapping[str, Sequence[str]] | None = None,
    *,
    fold_accents: bool = True,
) -> RuleSet:
    """Compile every rule and load its model. Raises `RuleCompileError` listing every error of
    every rule (and of the entities, and of the models), so a broken rule is never dropped
    silently. `fold_accents` sets the shared normaliser (process-wide) for queries and text."""
    set_fold_accents(fold_accents)
    gazetteer, errors = compile_entities(entities or {})
    scorers: dict[int, tuple[ScorerSpec, Model]] = {}
    rules: list[CompiledRule] = []
    needs: list[Need] = []
    leaves: dict[tuple[Any, ...], PhraseLeaf] = {}
    entity_leaves: dict[tuple[Any, ...], EntityLeaf] = {}
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            errors.append(
                RuleError(
                    spec.name,
                    0,
                    f"duplicate rule name {spec.name!r}",
                    "give each rule its own name",
                )
            )
            continue
        seen.add(spec.name)
        try:
            tree = parse(spec.query, spec.name)
        except RuleCompileError as exc:
            errors.extend(exc.errors)
            continue
        ctx = _Build(gazetteer, leaves, spec.name, entities=entity_leaves)
        root = _build(tree, TEXT_SCOPE, ctx)
        if ctx.errors:
            errors.extend(ctx.errors)
            continue
        if spec.scorer is not None:
            from monitor.rules.scorer import ScorerLoadError, load_model

            if spec.scorer.data_error:
                errors.append(ScorerError(spec.name, 0, spec.scorer.data_error))
                continue
            try:
                model = load_model(
                    spec.scorer.model, spec.name, data_sha256=spec.scorer.data_sha256
                )
            except ScorerLoadError as exc:
                errors.append(ScorerError(spec.name, 0, str(exc)))
                continue
            scorers[len(rules)] = (spec.scorer, model)
        rules.append(CompiledRule(spec.name, spec.query, root))
        needs.append(_need(root))
    if errors:
        raise RuleCompileError(errors)
    return RuleSet(rules, needs, scorers, fold_accents=fold_accents)


# --------------------------------------------------------------------------- tree -> nodes


@dataclass(slots=True)
class _Build:
    """What building one rule needs; `leaves` interns identical leaves across all rules, so
    an article looks each up once (see `Doc.leaf_cache`)."""

    gaz: Gazetteer
    leaves: dict[tuple[Any, ...], PhraseLeaf]
    rule: str = ""
    errors: list[RuleError] = field(default_factory=list)
    # Entities too: one entity is often named by hundreds of rules.
    entities: dict[tuple[Any, ...], EntityLeaf] = field(default_factory=dict)

    def leaf(self, phrase: Phrase, scope: tuple[str, ...], label: str) -> PhraseLeaf:
        key = (phrase.words, phrase.alternatives, scope, label)
        leaf = self.leaves.get(key)
        if leaf is None:
            leaf = self.leaves[key] = PhraseLeaf(phrase.words, phrase.alternatives, scope, label)
        return leaf


def _build(node: Node, scope: tuple[str, ...], ctx: _Build) -> EvalNode:
    if isinstance(node, Phrase):
        return ctx.leaf(node, scope, node.source)
    if isinstance(node, EntityRef):
        return _entity_leaf(node, scope, ctx)
    if isinstance(node, Regex):
        return _regex_leaf(node, scope, ctx)
    if isinstance(node, Scope):
        return _build(node.child, node.fields, ctx)
    if isinstance(node, Not):
        return NotNode(_build(node.child, scope, ctx))
    if isinstance(node, Near):
        op = "ONEAR" if node.ordered else "NEAR"
        return NearNode(
            _build(node.left, scope, ctx),
            _build(node.right, scope, ctx),
            node.distance,
            node.ordered,
            f"{op}/{node.distance}",
        )
    children = tuple(_build(c, scope, ctx) for c in node.children)
    if isinstance(node, And):
        # Cheap, selective children first: AND stops at the first that fails.
        return AndNode(tuple(sorted(children, key=_eval_cost)))
    assert isinstance(node, Or)
    return OrNode(children)


def _entity_leaf(node: EntityRef, scope: tuple[str, ...], ctx: _Build) -> EntityLeaf:
    aliases = ctx.gaz.resolve(node, ctx.rule)
    if isinstance(aliases, RuleError):
        ctx.errors.append(aliases)
        aliases = ()
    leaves = tuple(ctx.leaf(a, scope, node.source) for a in aliases)
    entity = ctx.entities.get((leaves, node.source))
    if entity is None:
        entity = ctx.entities[leaves, node.source] = EntityLeaf(leaves, node.source)
    return entity


def _regex_leaf(node: Regex, scope: tuple[str, ...], ctx: _Build) -> RegexLeaf:
    flags = 0
    for f in node.flags:
        flags |= _REGEX_FLAGS[f]
    try:
        pattern = regex.compile(node.pattern, flags)
    except regex.error as exc:
        # The stubs omit `pos` and `msg`, which regex.error sets like re.error does.
        pos = getattr(exc, "pos", None)
        msg = getattr(exc, "msg", str(exc))
        ctx.errors.append(
            RuleError(
                ctx.rule,
                node.offset + 1 + (pos if isinstance(pos, int) else 0),
                f"invalid regex: {msg}",
                "regexes use Python syntax; escape / as \\/",
            )
        )
        pattern = None
    return RegexLeaf(pattern, scope, node.source)


def _eval_cost(node: EvalNode) -> int:
    if isinstance(node, NotNode):
        return 3
    if isinstance(node, RegexLeaf):
        return 2
    return 0 if isinstance(node, PhraseLeaf) else 1


# --------------------------------------------------------------------------- prefilter


def _word_key(word: Word) -> str:
    return f"{word.norm}*" if word.prefix else word.norm


#: Fields short enough that a token is far less likely in them than in the body.
_SHORT_FIELDS = ~(FIELD_BITS["summary"] | FIELD_BITS["body"])


def _key_cost(key: str, mask: int) -> float:
    """Estimated share of articles that contain `key` in the fields of `mask`."""
    freq = default_frequency()
    share = freq.prefix_share(key[:-1]) if key.endswith("*") else freq.share(key)
    return share * 0.1 if not mask & ~_SHORT_FIELDS else share


def _mask(fields: tuple[str, ...]) -> int:
    mask = 0
    for name in fields:
        mask |= FIELD_BITS[name]
    return mask


def _need(node: EvalNode) -> Need:
    if isinstance(node, PhraseLeaf):
        mask = _mask(node.fields)
        options = [
            _group("all", [("key", _word_key(w), mask) for w in words])
            for words in (node.words, *node.alternatives)
        ]
        return _group("any", options)
    if isinstance(node, EntityLeaf | OrNode):
        parts = [_need(c) for c in (node.children if isinstance(node, OrNode) else node.aliases)]
        if any(p is None for p in parts):
            return None
        return _group("any", parts)
    if isinstance(node, AndNode | NearNode):
        required = [p for p in (_need(c) for c in node.children) if p is not None]
        return _group("all", required) if required else None
    return None


def _group(kind: str, parts: Sequence[Need]) -> Need:
    """("all"/"any", parts) with single parts unwrapped and nested groups of a kind merged."""
    flat: list[Need] = []
    for part in parts:
        if part is not None and part[0] == kind:
            flat.extend(part[1])
        elif part not in flat:
            flat.append(part)
    return flat[0] if len(flat) == 1 else (kind, tuple(flat))


#: A conjunction of prefilter atoms, every one of which must hold.
Conj = frozenset[int]
#: A conjunction as indexed: the atoms other than the two it is checked by first, and its
#: target (`~rule`, or a derived atom to set).
Posting = tuple[Conj, int]
#: The conjunctions reached through one atom, grouped by their second rarest atom (checked
#: once for the group): (second atom or _TRUE, postings).
Group = tuple[int, tuple[Posting, ...]]
#: An atom that always holds: the "second atom" of a conjunction of one atom.
_TRUE = -1
#: Most conjunctions one AND may expand to before a part of it becomes a derived atom.
_MAX_PRODUCT = 16


class _Prefilter:
    """The rules' needs in disjunctive normal form, over atoms, indexed by their rarest atom.

    A base atom is (key, field mask): the key occurs in one of those fields. A derived atom
    stands for a sub-need whose expansion would multiply out too far (an entity's dozen aliases
    under an AND): it is computed once per article from its own conjunctions, at an earlier
    stage than the conjunctions that use it, and shared by every rule with the same sub-need.
    """

    def __init__(self) -> None:
        self._base: dict[tuple[str, int], int] = {}
        self._derived: dict[Need, int] = {}
        self._cost: list[float] = []
        self._level: list[int] = []
        self._postings: list[dict[int, list[Posting]]] = []

    def add_rule(self, rule: int, need: Need) -> None:
        self._index(self._dnf(need), ~rule)

    def key_atoms(self) -> dict[str, tuple[tuple[int, int], ...]]:
        """Key -> its (field mask, atom) pairs."""
        out: dict[str, list[tuple[int, int]]] = {}
        for (key, mask), atom in self._base.items():
            out.setdefault(key, []).append((mask, atom))
        return {k: tuple(v) for k, v in out.items()}

    def stages(self) -> list[tuple[dict[int, tuple[Group, ...]], frozenset[int]]]:
        """Per stage: indexing atom -> its groups, and the set of indexing atoms (a set
        intersects with the few atoms of an article in time proportional to those)."""
        out: list[tuple[dict[int, tuple[Group, ...]], frozenset[int]]] = []
        for stage in self._postings:
            index: dict[int, tuple[Group, ...]] = {}
            for atom, postings in stage.items():
                groups: dict[int, list[Posting]] = {}
                for rest, target in postings:
                    second = min(rest, key=self._rank) if rest else _TRUE
                    groups.setdefault(second, []).append((rest - {second}, target))
                index[atom] = tuple((second, tuple(p)) for second, p in groups.items())
            out.append((index, frozenset(stage)))
        return out

    def _rank(self, atom: int) -> tuple[float, int]:
        # Ties go to the lower id, so the index does not depend on set iteration order.
        return self._cost[atom], atom

    def _atom(self, cost: float, level: int) -> int:
        self._cost.append(cost)
        self._level.append(level)
        return len(self._cost) - 1

    def _index(self, conjs: list[Conj], target: int) -> None:
        for conj in conjs:
            stage = max(self._level[a] for a in conj)
            while len(self._postings) <= stage:
                self._postings.append({})
            by = min(conj, key=self._rank)
            self._postings[stage].setdefault(by, []).append((conj - {by}, target))

    def _dnf(self, need: Need) -> list[Conj]:
        assert need is not None
        if need[0] == "key":
            key, mask = need[1], need[2]
            atom = self._base.get((key, mask))
            if atom is None:
                atom = self._base[key, mask] = self._atom(_key_cost(key, mask), 0)
            return [frozenset({atom})]
        parts = [self._dnf(p) for p in need[1]]
        if need[0] == "any":
            return list(dict.fromkeys(c for part in parts for c in part))
        while math.prod(len(p) for p in parts) > _MAX_PRODUCT:
            widest = max(range(len(parts)), key=lambda j: len(parts[j]))
            parts[widest] = [frozenset({self._derive(need[1][widest])})]
        conjs: list[Conj] = [frozenset()]
        for part in parts:
            conjs = list(dict.fromkeys(c | d for c in conjs for d in part))
        return conjs

    def _derive(self, need: Need) -> int:
        atom = self._derived.get(need)
        if atom is None:
            conjs = self._dnf(need)
            # The chance that one of its conjunctions holds is at most the sum of theirs.
            cost = min(1.0, sum(min(self._cost[a] for a in c) for c in conjs))
            level = 1 + max(self._level[a] for c in conjs for a in c)
            atom = self._derived[need] = self._atom(cost, level)
            self._index(conjs, atom)
        return atom
