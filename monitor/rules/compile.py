"""Compiling rules into a `RuleSet`, and matching articles against it.

Owns the translation of syntax trees into evaluation nodes (scopes pushed down to the leaves,
entities expanded, regexes compiled), the collection of every error of every rule, and the
prefilter: each rule is indexed under the tokens one of which must occur for it to match
(the rarest-looking choice per AND, all alternatives per OR), all keys go into one
Aho-Corasick automaton, and an article is scanned once to find the rules worth evaluating.
So the cost of matching grows with the tokens of an article, not with the number of rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import ahocorasick
import regex

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

#: Every field an article offers to rules (as `Article.fields()`), with its prefilter bit.
FIELD_BITS = {
    name: 1 << i
    for i, name in enumerate(("title", "summary", "body", "author", "tags", "url", "feed"))
}

#: A prefilter clause: (key, field mask) pairs, one of which must occur. A key is a token,
#: or a prefix followed by `*`.
Clause = frozenset[tuple[str, int]]

#: What an article must contain for a rule to possibly match, exactly as its query says up to
#: NOT, regexes and distances: ("key", key, mask), ("all", parts) or ("any", parts); None
#: when nothing is required.
Need = tuple[Any, ...] | None

# Words so common that a rule indexed under them would be evaluated for nearly every article;
# the prefilter picks another required word when it can.
_COMMON = frozenset(
    (  # noqa: SIM905 (a word list reads better as text)
        "the a an and or of to in on at for by with from as is are was were be been it its this "
        "that he she they we you i his her their our us said says say has have had will would "
        "not no but new after over up out more than about into also one two"
    ).split()
)
_REGEX_FLAGS = {"i": regex.IGNORECASE, "m": regex.MULTILINE, "s": regex.DOTALL, "x": regex.VERBOSE}


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A rule to compile: its name and its query."""

    name: str
    query: str


@dataclass(frozen=True, slots=True)
class CompiledRule:
    name: str
    query: str
    root: EvalNode


class RuleSet:
    """Compiled rules plus their prefilter. Safe to share between threads (read-only)."""

    def __init__(
        self, rules: list[CompiledRule], clauses: list[list[Clause]], needs: list[Need]
    ) -> None:
        self._rules = rules
        self._by_name = {r.name: r for r in rules}
        self._always = [i for i, c in enumerate(clauses) if not c]
        # Each rule is indexed under the keys of its most selective clause; a rule reached that
        # way is evaluated only if the keys found could satisfy its whole query.
        shared: dict[Need, Callable[[dict[str, int]], bool]] = {}
        self._needs = [_need_test(n, shared) for n in needs]
        self._entries: dict[str, list[tuple[int, int]]] = {}  # key -> (field mask, rule)
        for i, rule_clauses in enumerate(clauses):
            if not rule_clauses:
                continue
            best = min(rule_clauses, key=_clause_cost)
            for key, mask in best:
                self._entries.setdefault(key, []).append((mask, i))
        # Every key a rule's needs mention must be detectable, not only the indexed ones.
        keys: set[str] = set(self._entries)
        for need in needs:
            _collect_keys(need, keys)
        self._exact = frozenset(k for k in keys if not k.endswith("*"))
        self._prefixes: ahocorasick.Automaton | None = None
        prefixes = [k for k in keys if k.endswith("*")]
        if prefixes:
            # Matched against " tok1 tok2 ...": the leading space anchors a key at a token start.
            automaton = ahocorasick.Automaton()
            for key in prefixes:
                automaton.add_word(" " + key[:-1], key)
            automaton.make_automaton()
            self._prefixes = automaton

    @property
    def rule_names(self) -> list[str]:
        return [r.name for r in self._rules]

    def query_of(self, rule: str) -> str:
        return self._by_name[rule].query

    def found_keys(self, doc: Doc) -> dict[str, int]:
        """Prefilter keys present in the article -> mask of the fields they occur in."""
        found: dict[str, int] = {}
        for name, bit in FIELD_BITS.items():
            if not doc.fields.get(name):
                continue
            toks = doc.tokens(name)
            vocab = set(toks.norms)
            if toks.aliases:
                vocab.update(toks.aliases)
            for key in vocab & self._exact:
                found[key] = found.get(key, 0) | bit
            if self._prefixes is not None:
                for _, key in self._prefixes.iter(" " + " ".join(vocab)):
                    found[key] = found.get(key, 0) | bit
        return found

    def candidates(self, doc: Doc) -> list[int]:
        """Indexes of the rules whose required tokens occur in the article, in rule order."""
        out: set[int] = set(self._always)
        if not self._entries:
            return sorted(out)
        found = self.found_keys(doc)
        entries, needs = self._entries, self._needs
        tried: set[int] = set()
        for key, where in found.items():
            for mask, i in entries.get(key, ()):
                if mask & where and i not in tried:
                    tried.add(i)
                    if needs[i](found):
                        out.add(i)
        return sorted(out)

    def match(self, fields: Mapping[str, str]) -> list[Match]:
        """Every rule that matches the article, in rule order, with its hits."""
        doc = Doc(fields)
        out: list[Match] = []
        for i in self.candidates(doc):
            rule = self._rules[i]
            spans = rule.root.ev(doc)
            if spans is not None:
                out.append(Match(rule.name, _hits(doc, spans)))
        return out

    def match_rule(self, fields: Mapping[str, str], rule: str) -> Match | None:
        """One rule against the article, without the prefilter. KeyError if not in the set."""
        compiled = self._by_name[rule]
        doc = Doc(fields)
        spans = compiled.root.ev(doc)
        return None if spans is None else Match(rule, _hits(doc, spans))

    def explain(self, fields: Mapping[str, str], rule: str) -> str:
        """Why `rule` matched the article or why not: each node of its query, hit or missed."""
        from monitor.rules.explain import explain_rule

        compiled = self._by_name[rule]
        return explain_rule(compiled.name, compiled.root, Doc(fields))


def _hits(doc: Doc, spans: Iterable[Span]) -> list[Hit]:
    seen = {hit_span(doc, hit) for span in spans for hit in span[3]}
    return [Hit(*h) for h in sorted(seen)]


def compile_rules(
    specs: Sequence[RuleSpec], entities: Mapping[str, Sequence[str]] | None = None
) -> RuleSet:
    """Compile every rule. Raises `RuleCompileError` listing every error of every rule (and of
    the entities), so a broken rule is never dropped silently."""
    gazetteer, errors = compile_entities(entities or {})
    rules: list[CompiledRule] = []
    clauses: list[list[Clause]] = []
    needs: list[Need] = []
    leaves: dict[tuple[Any, ...], PhraseLeaf] = {}
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
        ctx = _Build(gazetteer, leaves, spec.name)
        root = _build(tree, TEXT_SCOPE, ctx)
        if ctx.errors:
            errors.extend(ctx.errors)
            continue
        rules.append(CompiledRule(spec.name, spec.query, root))
        clauses.append(_clauses(root))
        needs.append(_need(root))
    if errors:
        raise RuleCompileError(errors)
    return RuleSet(rules, clauses, needs)


# --------------------------------------------------------------------------- tree -> nodes


@dataclass(slots=True)
class _Build:
    """What building one rule needs; `leaves` interns identical leaves across all rules, so
    an article looks each up once (see `Doc.leaf_cache`)."""

    gaz: Gazetteer
    leaves: dict[tuple[Any, ...], PhraseLeaf]
    rule: str = ""
    errors: list[RuleError] = field(default_factory=list)

    def leaf(self, phrase: Phrase, scope: tuple[str, ...], label: str) -> PhraseLeaf:
        key = (phrase.words, phrase.alternatives, scope, label)
        leaf = self.leaves.get(key)
        if leaf is None:
            leaf = self.leaves[key] = PhraseLeaf(phrase.words, phrase.alternatives, scope, label)
        return leaf


def _build(node: Node, scope: tuple[str, ...], ctx: _Build) -> EvalNode:
    gaz, rule, errors = ctx.gaz, ctx.rule, ctx.errors
    if isinstance(node, Phrase):
        return ctx.leaf(node, scope, node.source)
    if isinstance(node, EntityRef):
        aliases = gaz.resolve(node, rule)
        if isinstance(aliases, RuleError):
            errors.append(aliases)
            aliases = ()
        leaves = tuple(ctx.leaf(a, scope, node.source) for a in aliases)
        return EntityLeaf(leaves, node.source)
    if isinstance(node, Regex):
        flags = 0
        for f in node.flags:
            flags |= _REGEX_FLAGS[f]
        try:
            pattern = regex.compile(node.pattern, flags)
        except regex.error as exc:
            # The stubs omit `pos` and `msg`, which regex.error sets like re.error does.
            pos = getattr(exc, "pos", None)
            msg = getattr(exc, "msg", str(exc))
            errors.append(
                RuleError(
                    rule,
                    node.offset + 1 + (pos if isinstance(pos, int) else 0),
                    f"invalid regex: {msg}",
                    "regexes use Python syntax; escape / as \\/",
                )
            )
            pattern = None
        return RegexLeaf(pattern, scope, node.source)
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


def _eval_cost(node: EvalNode) -> int:
    if isinstance(node, NotNode):
        return 3
    if isinstance(node, RegexLeaf):
        return 2
    return 0 if isinstance(node, PhraseLeaf) else 1


# --------------------------------------------------------------------------- prefilter


def _word_key(word: Word) -> str:
    return f"{word.norm}*" if word.prefix else word.norm


def _key_cost(key: str) -> int:
    token = key.rstrip("*")
    cost = max(0, 12 - len(token))
    if key.endswith("*"):
        cost += 6
    if token in _COMMON or token.isdigit():
        cost += 50
    return cost


def _clause_cost(clause: frozenset[tuple[str, int]]) -> int:
    return sum(_key_cost(k) for k, _ in clause)


def _mask(fields: tuple[str, ...]) -> int:
    mask = 0
    for name in fields:
        mask |= FIELD_BITS[name]
    return mask


def _clauses(node: EvalNode) -> list[Clause]:
    """What every article the node matches contains, as clauses that must all hold, each a set
    of (key, fields) one of which occurs. An empty list promises nothing (NOT, regexes)."""
    if isinstance(node, PhraseLeaf):
        mask = _mask(node.fields)
        if not node.alternatives:
            return [frozenset({(_word_key(w), mask)}) for w in node.words]
        best = {
            (min((_word_key(w) for w in words), key=_key_cost), mask)
            for words in (node.words, *node.alternatives)
        }
        return [frozenset(best)]
    if isinstance(node, EntityLeaf | OrNode):
        union: set[tuple[str, int]] = set()
        for child in node.children if isinstance(node, OrNode) else node.aliases:
            child_clauses = _clauses(child)
            if not child_clauses:
                return []
            union |= min(child_clauses, key=_clause_cost)  # type: ignore[arg-type]
        return [frozenset(union)]
    if isinstance(node, AndNode | NearNode):
        out: list[Clause] = []
        for child in node.children:
            out.extend(c for c in _clauses(child) if c not in out)
        return out
    return []


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


def _need_test(
    need: Need, shared: dict[Need, Callable[[dict[str, int]], bool]] | None = None
) -> Callable[[dict[str, int]], bool]:
    """`need` compiled into a closure: the prefilter runs it for thousands of rules, so the
    loops are written out (a generator in all()/any() costs twice as much here), and a group
    used by many rules (an entity's aliases) is one closure that remembers its answer for the
    article being filtered."""
    shared = {} if shared is None else shared
    if need in shared:
        return shared[need]
    test = _build_test(need, shared)
    if need is not None and need[0] != "key" and len(need[1]) > 3:
        test = _remember_last(test)
    shared[need] = test
    return test


def _remember_last(test: Callable[[dict[str, int]], bool]) -> Callable[[dict[str, int]], bool]:
    # One (found, answer) tuple replaced whole: threads sharing the rule set never see a
    # half-updated memo, and holding `found` keeps its identity from being reused.
    memo: list[tuple[dict[str, int] | None, bool]] = [(None, False)]

    def remembered(found: dict[str, int]) -> bool:
        last = memo[0]
        if last[0] is found:
            return last[1]
        answer = test(found)
        memo[0] = (found, answer)
        return answer

    return remembered


def _build_test(
    need: Need, shared: dict[Need, Callable[[dict[str, int]], bool]]
) -> Callable[[dict[str, int]], bool]:
    if need is None:
        return lambda found: True
    kind, parts = need[0], need[1]
    if kind == "key":
        key, mask = need[1], need[2]
        return lambda found: bool(found.get(key, 0) & mask)
    if all(p is not None and p[0] == "key" for p in parts):
        pairs = tuple((p[1], p[2]) for p in parts if p is not None)
        if kind == "all":

            def all_keys(found: dict[str, int]) -> bool:
                for key, mask in pairs:  # noqa: SIM110
                    if not found.get(key, 0) & mask:
                        return False
                return True

            return all_keys

        def any_key(found: dict[str, int]) -> bool:
            for key, mask in pairs:  # noqa: SIM110
                if found.get(key, 0) & mask:
                    return True
            return False

        return any_key
    tests = tuple(_need_test(p, shared) for p in parts)
    if kind == "all":

        def all_of(found: dict[str, int]) -> bool:
            for test in tests:  # noqa: SIM110
                if not test(found):
                    return False
            return True

        return all_of

    def any_of(found: dict[str, int]) -> bool:
        for test in tests:  # noqa: SIM110
            if test(found):
                return True
        return False

    return any_of


def _collect_keys(need: Need, into: set[str]) -> None:
    if need is None:
        return
    if need[0] == "key":
        into.add(need[1])
        return
    for part in need[1]:
        _collect_keys(part, into)
